#!/usr/bin/python3
"""mpi_model.py - the cost model of a data-parallel step (bench/NOTES.md,
"Data-parallel scaling"), checked against bench_mpi's 2-rank rows and
extrapolated to 8 and 64 machines.

    mpi_model.py RESULTS_DIR [--alpha-us A] [--eff E]

RESULTS_DIR is a bench/run.sh results directory with the MPI rows
(bench/run.sh --only MPI ...): mpi_W3_1x1, mpi_W3_2x1, mpi_W3_1x1_b{128,32,4},
the same for W5 (b 64, 16, 2) and mpi_sweep_2.

Model, per optimizer step with N ranks and a global batch G:
    T(N) = T_c(G / N) + T_ar(N, bytes) - hidden
    T_ar(N, bytes) = 2 (N-1) alpha + 2 (N-1)/N * bytes / B        (ring)
(Rabenseifner's reduce-scatter + allgather, what backprop_mpi asks Open
MPI's nonblocking allreduce for, moves the same bytes with 2 log2(N)
latencies instead of 2 (N-1): printed beside the ring.)
T_c(b): one rank's step at batch b, measured (the 1x1 rows at G/N), and
for comparison the plain split T_c(G) / N. bytes: the float32 gradient.
hidden: the part of the reduction that can run behind the backward pass
of the layers below the first bucket; 0 in this implementation on these
machines (no MPI progress inside a layer's backward, and on shared memory
the copies take the same cores); the bound, min(the first bucket's
reduction, the backward left after it starts), is printed as `hide`.
Networks: B = E x the line rate (E = --eff, 0.9), alpha = --alpha-us (20).
"""
import glob
import json
import math
import os
import sys

# Share of a step's multiply-adds left to run after the first bucket
# starts (the layers below it): W3's first bucket closes after the
# 2048x2048 layer, leaving layer 1's weight gradient, 784*2048 MACs of
# 3 * 5,820,416 a sample; W5's after dense(128), leaving conv2's weight and
# input gradients and conv1's weight gradient, 2 * 3,612,672 + 225,792 of
# 3 * 4,241,152.
HIDE_SHARE = {"W3": 784 * 2048 / (3 * 5820416.0),
              "W5": (2 * 3612672 + 225792) / (3 * 4241152.0)}
# Bytes of that first bucket (the trainer's 1 MiB buckets are whole layers
# from the top: W3 dense(10) + dense(2048x2048), W5 dense(10) + dense(128)).
BUCKET0 = {"W3": 4 * (20490 + 4196352), "W5": 4 * (1290 + 401536)}
GLOBAL = {"W3": 256, "W5": 128}
LINKS = (("25 Gb/s", 25e9 / 8), ("100 Gb/s", 100e9 / 8))


def load(d):
    res = {}
    for p in glob.glob(os.path.join(d, "mpi_*.json")):
        try:
            lines = [json.loads(ln) for ln in open(p) if ln.strip()]
        except (OSError, ValueError):
            continue
        if lines:
            res[os.path.basename(p)[:-5]] = lines
    return res


def ring(n, nbytes, alpha, bw):
    return 0.0 if n == 1 else 2 * (n - 1) * alpha + 2.0 * (n - 1) / n * nbytes / bw


def rabenseifner(n, nbytes, alpha, bw):
    return 0.0 if n == 1 else 2 * math.log2(n) * alpha + 2.0 * (n - 1) / n * nbytes / bw


def interp(points, x):
    """log-log interpolation of the sweep's (bytes, seconds)."""
    pts = sorted(points)
    if x <= pts[0][0]:
        return pts[0][1] * x / pts[0][0]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            f = math.log(x / x0) / math.log(x1 / x0)
            return math.exp(math.log(y0) + f * (math.log(y1) - math.log(y0)))
    return pts[-1][1] * x / pts[-1][0]


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    d = args[0]
    alpha = 20e-6
    eff = 0.9
    i = 1
    while i < len(args):
        if args[i] == "--alpha-us":
            alpha = float(args[i + 1]) * 1e-6
        elif args[i] == "--eff":
            eff = float(args[i + 1])
        else:
            print(__doc__, file=sys.stderr)
            return 2
        i += 2
    res = load(d)
    sweep = res.get("mpi_sweep_2")
    if not sweep:
        print("mpi_model: no mpi_sweep_2.json in %s" % d, file=sys.stderr)
        return 1
    fit = sweep[-1]
    nb = [(r["bytes"], r["seconds"]) for r in sweep[:-1] if r["op"] == "iallreduce+wait"]
    blk = [(r["bytes"], r["seconds"]) for r in sweep[:-1] if r["op"] == "allreduce"]
    print("shared memory, 2 ranks (the sweep, MPI_Iallreduce): ring fit alpha %.2f us (%d B), "
          "B %.2f GB/s (%d .. %d B)" % (fit["alpha_us"], fit["fit_small_bytes"],
                                        fit["bandwidth_gbps"], fit.get("fit_from_bytes", 0),
                                        fit.get("fit_to_bytes", 0)))
    print("networks: B = %.2f x line rate, alpha = %.0f us" % (eff, alpha * 1e6))

    for w in ("W3", "W5"):
        g = GLOBAL[w]
        row = lambda tag: res.get(tag, [None])[-1]
        one, two = row("mpi_%s_1x1" % w), row("mpi_%s_2x1" % w)
        if not one:
            continue
        # T_c(b): one rank, steady step time (bp_fit's checks left out)
        tc = {g: one["us_per_step_steady"] * 1e-6}
        for b in (g // 2, g // 8, g // 64):
            r = row("mpi_%s_1x1_b%d" % (w, b))
            if r:
                tc[b] = r["us_per_step_steady"] * 1e-6
        nbytes = one["grad_bytes"]
        print()
        print("%s: %s parameters, %s gradient bytes; T_c(b) one rank, ms: %s"
              % (w, format(one["params"], ","), format(nbytes, ","),
                 ", ".join("b %d %.2f" % (b, tc[b] * 1e3) for b in sorted(tc, reverse=True))))
        if g // 2 in tc:
            # above 1: work that does not shrink with the batch (the optimizer
            # update of every parameter, gradient norms, per-layer calls)
            print("    per-rank batch efficiency: T_c(%d) = %.2f x T_c(%d) / 2"
                  % (g // 2, tc[g // 2] / (tc[g] / 2), g))
        if two:
            t2 = two["us_per_step_steady"] * 1e-6
            ar_me = two.get("allreduce_grad_s") or interp(nb, nbytes)
            ar_nb = interp(nb, nbytes)
            ar_blk = interp(blk, nbytes)
            ar_fit = ring(2, nbytes, fit["alpha_us"] * 1e-6, fit["bandwidth_gbps"] * 1e9)
            comm = two["comm_us_per_step"] * 1e-6
            print("    2 ranks measured: %.2f ms a step (1 rank %.2f ms: %.2fx), %.2f ms of it in "
                  "the communicator (rank 0; slowest rank %.2f)"
                  % (t2 * 1e3, tc[g] * 1e3, tc[g] / t2, comm * 1e3,
                     two["comm_us_per_step_max"] * 1e-3))
            print("    allreduce of %s B alone: %.2f ms (MPI_Iallreduce in bench_mpi before "
                  "training; used below), sweep interpolated %.2f ms (MPI_Iallreduce) / %.2f ms "
                  "(MPI_Allreduce), ring fit %.2f ms"
                  % (format(nbytes, ","), ar_me * 1e3, ar_nb * 1e3, ar_blk * 1e3, ar_fit * 1e3))
            for name, tcn in (("T_c(%d) / 2" % g, tc[g] / 2), ("T_c(%d)" % (g // 2), tc.get(g // 2))):
                if tcn is None:
                    continue
                pred = tcn + ar_me
                print("    model, compute %-12s %.2f + allreduce %.2f = %.2f ms -> %.2fx "
                      "(measured %.2f ms, %.2fx; model/measured %.2f)"
                      % (name + ":", tcn * 1e3, ar_me * 1e3, pred * 1e3, tc[g] / pred, t2 * 1e3,
                         tc[g] / t2, pred / t2))
        print("    predictions at global batch %d (per-rank batch %d and %d; T_c measured on one "
              "rank at that batch), no overlap; speedup against T_c(%d) on one rank; hide = most "
              "of the allreduce that could run behind the backward below the first bucket; last: "
              "the speedup if compute divided by N (T_c(%d) / N + ring):"
              % (g, g // 8, g // 64, g, g))
        print("      %-9s %4s %7s %8s %8s %8s %8s %7s | %8s %8s | %7s %8s"
              % ("link", "N", "b/rank", "T_c ms", "ring ms", "step ms", "speedup", "effic.",
                 "Rab. ms", "speedup", "hide ms", "T_c(G)/N"))
        for lname, line in LINKS:
            bw = eff * line
            for n in (8, 64):
                b = g // n
                naive = tc[g] / n
                tcn = tc.get(b)
                tar = ring(n, nbytes, alpha, bw)
                if tcn is None:
                    continue
                hide = min(HIDE_SHARE[w] * tcn, ring(n, BUCKET0[w], alpha, bw))
                rab = rabenseifner(n, nbytes, alpha, bw)
                step = tcn + tar
                sp = tc[g] / step
                print("      %-9s %4d %7d %8.2f %8.2f %8.2f %7.2fx %6.0f%% | %8.2f %7.2fx | %7.2f %7.2fx"
                      % (lname, n, b, tcn * 1e3, tar * 1e3, step * 1e3, sp, 100 * sp / n,
                         rab * 1e3, tc[g] / (tcn + rab), hide * 1e3, tc[g] / (naive + tar)))
        print("    growing the global batch to N x %d (per-rank batch %d, lr scaled by N):" % (g, g))
        for lname, line in LINKS:
            bw = eff * line
            print("      %-9s " % lname + "; ".join(
                "N %d: step %.2f ms, %.1fx the samples/s of 1 rank (%.0f%%)"
                % (n, (tc[g] + ring(n, nbytes, alpha, bw)) * 1e3,
                   n * tc[g] / (tc[g] + ring(n, nbytes, alpha, bw)),
                   100 * tc[g] / (tc[g] + ring(n, nbytes, alpha, bw)))
                for n in (8, 64)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
