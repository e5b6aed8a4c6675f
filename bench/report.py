#!/usr/bin/python3
"""report.py - print the comparison table of a bench/run.sh results directory.

    report.py RESULTS_DIR

Reads RESULTS_DIR/*.json (one JSON line per measurement, named TAG.json) and
TAG.rss (peak RSS in KiB from /usr/bin/time -f %M; the program's own
getrusage figure is used when it is missing), prints the table and the
targets of issue 11 as pass/miss (with issue 10's data-parallel scaling from
bench_mpi's rows), and writes RESULTS_DIR/summary.json.
Exit status: 0 (missed targets are not failures), 1 if no result was read.
"""
import glob
import json
import os
import statistics
import sys

TITLES = {
    "W1": "MLP 784-256-128-10 relu, cross-entropy, Adam 1e-3, batch 128, epochs of 60,000",
    "W2": "10-32-32-1 tanh, MSE, Adam 1e-3, batch 32, epochs of 10,000 synthetic rows",
    "W3": "784-2048-2048-10 relu, cross-entropy, Adam 1e-3, batch 256, blocks of 60 steps",
    "W4": "inference, W1 network, 10,000 test images in batches of 1000",
    "W5": "CNN conv(32,3,1,1) bn relu maxpool(2) conv(64,3,1,1) bn relu maxpool(2) dense(128) "
          "relu dropout(0.3) dense(10), cross-entropy, Adam 1e-3, batch 128, blocks of %s steps",
    "W6": "inference, W5 network, 10,000 test images in batches of 1000",
    "W7": "char LSTM embedding(48,96) lstm(256) dense(96), windows of 64 characters, batch 64 "
          "streams, state carried (truncated BPTT), cross-entropy every step, Adam 1e-3, blocks "
          "of %s steps",
}
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
INFERENCE = ("W4", "W6")
CNN = ("W5", "W6")


def load_busy(dir_):
    """The rows of bench_busy.sh (busy.json: one JSON line per case)."""
    out = {}
    try:
        with open(os.path.join(dir_, "busy.json")) as f:
            for ln in f:
                if ln.strip():
                    r = json.loads(ln)
                    out[r["workload"]] = r
    except (OSError, ValueError, KeyError):
        pass
    return out


def load(dir_):
    res = {}
    for p in sorted(glob.glob(os.path.join(dir_, "*.json"))):
        tag = os.path.basename(p)[:-5]
        if tag in ("env", "summary", "busy"):
            continue
        try:
            with open(p) as f:
                lines = [json.loads(ln) for ln in f if ln.strip()]
            r = lines[-1]  # gemm_rate prints one line per GEMM, then the step
        except (ValueError, OSError, IndexError):
            continue
        r["detail"] = lines[:-1]
        rss = None
        try:
            with open(os.path.join(dir_, tag + ".rss")) as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            rss = int(lines[-1])
        except (OSError, ValueError, IndexError):
            pass
        r["peak_rss_kb"] = rss if rss is not None else r.get("rss_kb")
        r["tag"] = tag
        res[tag] = r
    return res


def spread(r):
    rates = r.get("rates") or []
    if len(rates) < 2:
        return None
    return 100.0 * (max(rates) - min(rates)) / statistics.median(rates)


def fmt(v, spec, width):
    if v is None:
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def prec(r):
    """A row's precision: "bf16" (backprop --precision bf16, torch.autocast) or "f32"."""
    return r.get("precision") or "f32"


def label(r):
    p = r["prog"]
    b = ", bf16" if prec(r) == "bf16" else ""
    if p == "backprop":
        return "backprop (%s%s)" % ("bp_fit" if r["api"] == "fit" else
                                    "train_step" if r["api"] == "step" else "bp_forward", b)
    if p == "torch":
        return "PyTorch %s%s%s" % (r.get("torch", ""), " compile" if r.get("compile") else "",
                                   " bf16" if b else "")
    if p == "fann":
        return "FANN %s" % r["api"]
    return p


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dir_ = sys.argv[1]
    res = load(dir_)
    busy = load_busy(dir_)
    if not res and not busy:
        print("report: no results in %s" % dir_, file=sys.stderr)
        return 1
    try:
        env = json.load(open(os.path.join(dir_, "env.json")))
    except (OSError, ValueError):
        env = {}

    def get(prog, w, api=None, threads=None, precision="f32"):
        """Rows of prog on w (float32 ones unless precision says otherwise; None: any)."""
        out = [r for r in res.values() if r.get("prog") == prog and r.get("workload") == w
               and (api is None or r.get("api") == api)
               and (threads is None or r.get("threads") == threads)
               and (precision is None or prec(r) == precision)]
        return out

    def best(rows, key="samples_per_s"):
        rows = [r for r in rows if r.get(key)]
        return max(rows, key=lambda r: r[key]) if rows else None

    gemm = {r["threads"]: r for r in res.values()
            if r.get("prog") == "gemm_rate" and r.get("gemm") == "step"
            and r.get("precision", "f32") == "f32"}
    gemm16 = {r["threads"]: r for r in res.values()
              if r.get("prog") == "gemm_rate" and r.get("gemm") == "step"
              and r.get("precision") == "bf16"}
    gemm2 = gemm.get(2, {}).get("gflops")
    peak = {r["threads"]: r["gflops"] for r in res.values()
            if r.get("prog") == "gemm_rate" and r.get("gemm") == "fma_peak"}

    print()
    print("backprop benchmark (issue 4)  %s  %s, %s cores  load avg start %s, end %s"
          % (env.get("date", "?"), env.get("cpu", "?"), env.get("nproc", "?"),
             env.get("loadavg_start", "?"), env.get("loadavg_end", "?")))
    print("rates: best of %s repetitions (each >= %s s of whole epochs/passes; W3 %s steps) "
          "after a warm-up; spread = (max - min) / median of the repetitions"
          % (env.get("reps", "?"), env.get("min_time", "?"), env.get("w3_steps", "?")))
    print("versions: git %s, oneDNN %s, PyTorch %s (Debian) and %s (%s), OpenBLAS %s, FANN %s"
          % (env.get("git", "?"), env.get("dnnl", "?"), env.get("torch", "?"),
             env.get("torch_pip", "not run"), env.get("torch_index", "PyPI"),
             env.get("openblas", "?"), env.get("fann", "?")))
    summary = {"env": env, "workloads": {}, "targets": []}
    try:
        load0 = float(str(env.get("loadavg_start", "0")).split()[0])
    except ValueError:
        load0 = 0.0
    if load0 > 0.5:
        print("WARNING: load average %.2f at the start: other processes share the %s cores, so "
              "timings (2-thread ones above all) are unreliable; rerun on an idle machine."
              % (load0, env.get("nproc", "?")))

    for w in WORKLOADS:
        rows = [r for r in res.values() if r.get("workload") == w
                and r.get("prog") not in ("gemm_rate", "backprop_mpi", "mpi_sweep")]
        if not rows:
            continue
        order = {"backprop": 0, "torch": 1, "fann": 2}
        api_order = {"step": 0, "forward": 0, "fit": 1}
        rows.sort(key=lambda r: (order.get(r["prog"], 9), prec(r), api_order.get(r["api"], 2),
                                 r["api"], r.get("torch", ""), bool(r.get("compile")),
                                 r["threads"]))
        bp = best(get("backprop", w, "forward" if w in INFERENCE else "step"))
        bp16 = best(get("backprop", w, "forward" if w in INFERENCE else "step", None, "bf16"))
        tb = best(get("torch", w))
        key = "steps_per_s" if w == "W2" else "samples_per_s"
        p0 = rows[0]
        print()
        steps_key = {"W5": "w5_steps", "W7": "w7_steps"}.get(w)
        print("%s  %s" % (w, TITLES[w] % env.get(steps_key, "?") if steps_key else TITLES[w]))
        if w == "W7":
            print("    params %s; %s FLOP/token (3 x 2 x the LSTM's and dense's weights); "
                  "samples/s = TOKENS/s (64 x 64 a step); text: %s tokens"
                  % (format(p0["params"], ","), format(p0["flop_per_sample"], ",.0f"),
                     format(p0.get("text_tokens") or 0, ",")))
        elif w in CNN:
            print("    params %s; conv and dense multiply-adds %s/sample; %s FLOP/sample (%s x MACs)"
                  % (format(p0["params"], ","), format(p0.get("macs") or 0, ","),
                     format(p0["flop_per_sample"], ",.0f"), "2" if w in INFERENCE else "3 x 2"))
        else:
            print("    params %s, %s FLOP/sample (%s x params)%s"
                  % (format(p0["params"], ","), format(p0["flop_per_sample"], ",.0f"),
                     "2" if w in INFERENCE else "6",
                     "; FANN: batch 1, see README" if any(r["prog"] == "fann" for r in rows)
                     else ""))
        hdr = ("  %-30s %3s %13s %11s %10s %8s %8s %7s %8s %7s"
               % ("program", "thr", "samples/s", "steps/s", "us/step", "bp/peer", "GFLOP/s",
                  "%gemm2", "RSS MiB", "spread"))
        print(hdr)
        print("  " + "-" * (len(hdr) - 2))
        if not bp:
            print("  %-30s     %12s" % ("backprop", "n/a"))
        for r in rows:
            mark = ""
            if r["prog"] == "torch" and tb is r:
                mark = "*"
            if r["prog"] in ("backprop",) and (bp is r or bp16 is r):
                mark = "*"
            ratio = None
            mine = bp16 if prec(r) == "bf16" else bp  # peers against backprop's same precision
            if r["prog"] != "backprop" and mine and r.get(key):
                ratio = mine[key] / r[key]
            pct = 100.0 * r["gflops"] / gemm2 if (w in ("W3",) + CNN and gemm2) else None
            rss = r.get("peak_rss_kb")
            sp = spread(r)
            print("  %-30s %3d%1s%12s %11s %10s %8s %8s %7s %8s %7s"
                  % (label(r)[:30], r["threads"], mark,
                     fmt(r["samples_per_s"], ",.0f", 12), fmt(r["steps_per_s"], ",.1f", 11),
                     fmt(r["us_per_step"], ",.1f" if r["us_per_step"] < 1e5 else ",.0f", 10),
                     fmt(ratio, ".2f", 7) + ("x" if ratio is not None else " "),
                     fmt(r["gflops"], ".1f", 8), fmt(pct, ".0f", 6) + ("%" if pct else " "),
                     fmt(rss / 1024.0 if rss else None, ".0f", 8),
                     fmt(sp, ".0f", 6) + ("%" if sp is not None else " ")))
            summary["workloads"].setdefault(w, []).append(
                {k: r.get(k) for k in ("tag", "prog", "api", "threads", "samples_per_s",
                                        "steps_per_s", "us_per_step", "gflops", "peak_rss_kb",
                                        "rates")})
        if w == "W3":
            for title, rates in (("oneDNN (best of sgemm, matmul), the step's GEMMs", gemm),
                                 ("oneDNN matmul in bf16, the step's GEMMs", gemm16)):
                for t in sorted(rates):
                    g = rates[t]
                    print("  %-30s %3d  %12s %11s %10s %8s %8.1f %7s %8s"
                          % (title, t, "", "", "", "", g["gflops"],
                             fmt(100.0 * g["gflops"] / gemm2, ".0f", 6) + "%" if gemm2 else "-",
                             fmt(g.get("rss_kb", 0) / 1024.0, ".0f", 8)))
            if gemm16 and bp16:
                g16 = gemm16.get(bp16["threads"])
                g32 = gemm.get(bp16["threads"])
                if g16 and g32:
                    print("    bf16: the best row (%d thread%s) runs at %.0f%% of the bf16 GEMM rate; "
                          "the GEMMs alone are %.2fx faster in bf16 than in float32"
                          % (bp16["threads"], "s" if bp16["threads"] > 1 else "",
                             100.0 * bp16["gflops"] / g16["gflops"], g16["gflops"] / g32["gflops"]))
            if 1 in gemm and 2 in gemm and gemm[2]["gflops"] < gemm[1]["gflops"]:
                print("    WARNING: the 2-thread GEMM rate is below the 1-thread rate: the machine "
                      "was busy, so %gemm2 and the W3 target are not meaningful in this run")
            print("    (GEMM rate: the 9 GEMMs of a step back to back, incl. layer 1's dX; "
                  "without it, 2 threads: %s GFLOP/s)"
                  % fmt(gemm.get(2, {}).get("gflops_needed_only"), ".1f", 0))
            if gemm:
                print("    each GEMM (M x N x K), GFLOP/s at 1/2 threads: " + "; ".join(
                    "%s %dx%dx%d: %s" % (d["gemm"], d["M"], d["N"], d["K"],
                                           "/".join("%.0f" % gd["gflops"]
                                                    for t in sorted(gemm)
                                                    for gd in gemm[t]["detail"]
                                                    if gd["gemm"] == d["gemm"]))
                    for d in gemm[min(gemm)]["detail"]))
        if w == "W4" and peak and bp and tb:
            need = 3.0 * tb[key] * bp["flop_per_sample"] * 1e-9
            top = max(peak.values())  # the machine's: every core's chains
            print("    float32 FMA peak of the cores (gemm_rate --peak, no memory): %s GFLOP/s; the best "
                  "row runs at %.0f%% of the highest; 3x the best PyTorch row would need %.0f GFLOP/s "
                  "(%.0f%% of it)" % (" / ".join("%.0f at %d thread%s" % (peak[t], t, "s" if t > 1 else "")
                                                for t in sorted(peak)),
                                      100.0 * bp["gflops"] / top, need, 100.0 * need / top))
            if 1 in peak and 2 in peak and peak[2] < 1.5 * peak[1]:
                print("    WARNING: the 2-thread peak is below 1.5x the 1-thread one: the machine was "
                      "busy, so the peak is understated in this run")
        if w in CNN and gemm2:
            print("    %%gemm2: GFLOP/s as a share of the oneDNN GEMM rate at 2 threads (W3's "
                  "GEMMs, %.1f GFLOP/s)" % gemm2)
            if 1 in gemm and gemm2 < gemm[1]["gflops"]:
                print("    WARNING: the 2-thread GEMM rate is below the 1-thread rate (%.1f): the "
                      "machine was busy, so %%gemm2 is not meaningful in this run"
                      % gemm[1]["gflops"])
        versions = sorted({r.get("torch") for r in get("torch", w) if not r.get("compile")})
        if len(versions) > 1:
            bv = [best([r for r in get("torch", w) if r.get("torch") == v and not r.get("compile")],
                       key) for v in versions]
            print("    PyTorch best row by version (no compile): " + ", ".join(
                "%s %s" % (v, fmt(b[key], ",.0f", 0)) for v, b in zip(versions, bv)) +
                "; %s / %s = %.2fx" % (versions[-1], versions[0], bv[-1][key] / bv[0][key]))
        if w in CNN or w == "W7":
            print("    backprop / best PyTorch: %s"
                  % ("%.2fx" % (bp[key] / tb[key]) if (bp and tb) else "n/a"))
        if w in ("W1", "W3", "W7"):
            b1 = best(get("backprop", w, "step", 1))
            b2 = best(get("backprop", w, "step", 2))
            if b1 and b2:
                print("    backprop 2 threads / 1 thread: %.2fx" % (b2[key] / b1[key]))
        print("    * = best backprop row (the one the ratios use) and best PyTorch row "
              "(any version, compiled or not)")

    # Data-parallel scaling (issue 10): bench_mpi's rows.
    mpi = sorted((r for r in res.values() if r.get("prog") == "backprop_mpi"),
                 key=lambda r: (r["workload"], r["ranks"], r["threads"], -r["batch"]))
    sweep = next((r for r in res.values() if r.get("prog") == "mpi_sweep"), None)
    mpi_speedup = {}
    if mpi or sweep:
        print()
        print("MPI  data-parallel training through bp_fit (mpirun -np N, 1 thread a rank): the "
              "same global batches and steps for every N")
        hdr = ("  %-10s %5s %9s %11s %9s %10s %10s %10s %8s %8s %7s"
               % ("workload", "NxT", "batch", "samples/s", "steps/s", "us/step", "steady", "comm us",
                  "GFLOP/s", "RSS MiB", "spread"))
        print(hdr)
        print("  " + "-" * (len(hdr) - 2))
        for r in mpi:
            rss = r.get("peak_rss_kb")
            sp = spread(r)
            comm = ("%.0f/%.0f" % (r["comm_us_per_step"], r["comm_us_per_step_max"])
                    if r["ranks"] > 1 else "-")
            print("  %-10s %5s %9s %11s %9s %10s %10s %10s %8s %8s %7s"
                  % (r["workload"], "%dx%d" % (r["ranks"], r["threads"]),
                     "%d/%d" % (r["batch"], r["rank_batch"]),
                     fmt(r["samples_per_s"], ",.0f", 11), fmt(r["steps_per_s"], ",.2f", 9),
                     fmt(r["us_per_step"], ",.0f", 10), fmt(r.get("us_per_step_steady"), ",.0f", 10),
                     comm.rjust(10), fmt(r["gflops"], ".1f", 8),
                     fmt(rss / 1024.0 if rss else None, ".0f", 8),
                     fmt(sp, ".0f", 6) + ("%" if sp is not None else " ")))
            summary.setdefault("mpi", []).append(
                {k: r.get(k) for k in ("tag", "workload", "ranks", "threads", "batch", "rank_batch",
                                        "samples_per_s", "samples_per_s_median", "us_per_step",
                                        "us_per_step_steady", "comm_us_per_step",
                                        "comm_us_per_step_max", "allreduce_grad_s", "grad_bytes",
                                        "rates")})
        for w in sorted({r["workload"] for r in mpi}):
            full = {"W3": 256, "W5": 128}.get(w)
            one = best([r for r in mpi if r["workload"] == w and r["ranks"] == 1 and r["threads"] == 1
                        and r["batch"] == full])
            two = best([r for r in mpi if r["workload"] == w and r["ranks"] == 2 and r["threads"] == 1
                        and r["batch"] == full])
            if one and two:
                mpi_speedup[w] = two["samples_per_s"] / one["samples_per_s"]
                med = two["samples_per_s_median"] / one["samples_per_s_median"]
                ar = two.get("allreduce_grad_s")
                print("    %s: 2x1 / 1x1 = %.2fx (medians %.2fx); gradient %s bytes, one "
                      "MPI_Iallreduce of it alone %s ms" % (w, mpi_speedup[w], med,
                                                            format(two["grad_bytes"], ","),
                                                            fmt(ar * 1e3 if ar else None, ".2f", 0)))
        print("    batch: global/per rank; rows with a smaller global batch on 1 rank are the cost "
              "model's compute term at 2, 8, 64 ranks (bench/mpi_model.py)")
        print("    steady: us a step inside bp_fit (without its data checks); comm us: time in the "
              "communicator's calls a step, rank 0 / the slowest rank")
        if sweep:
            pts = {(d["op"], d["bytes"]): d for d in sweep["detail"]}
            sizes = [1024, 65536, 1 << 20, 4 << 20, 16 << 20, 32 << 20]
            print("    allreduce sweep, %d ranks, float sum in place, best of repetitions: " % sweep["ranks"]
                  + "; ".join("%s %s" % (("%d KiB" % (b >> 10)) if b < (1 << 20) else ("%d MiB" % (b >> 20)),
                                        "/".join(fmt(pts[(op, b)]["seconds"] * 1e6, ".0f", 0)
                                                 for op in ("allreduce", "iallreduce+wait")
                                                 if (op, b) in pts))
                              for b in sizes if ("allreduce", b) in pts)
                  + " us (MPI_Allreduce / MPI_Iallreduce + MPI_Wait)")
            print("    ring model fitted to MPI_Iallreduce: alpha %.2f us (%s B), B %.2f GB/s (%s .. %s B)"
                  % (sweep["alpha_us"], format(sweep["fit_small_bytes"], ","),
                     sweep["bandwidth_gbps"], format(sweep["fit_from_bytes"], ","),
                     format(sweep["fit_to_bytes"], ",")))
            summary["mpi_sweep"] = sweep

    if busy:
        print()
        print("BUSY  the backprop CLI while two other processes keep both cores busy "
              "(`while :; do :; done` x 2)")
        print("  %-52s %11s %13s %8s" % ("command", "default", "--threads 1", "ratio"))
        titles = {"busy_train": "train wine (178 rows, dense(64) relu, 200 epochs)",
                  "busy_eval": "eval wine model on 500,000 rows"}
        for k in ("busy_train", "busy_eval"):
            r = busy.get(k)
            if r:
                print("  %-52s %10.2fs %12.2fs %7.2fx" % (titles[k], r["default_median_s"],
                                                      r["threads1_median_s"], r["ratio"]))
        print("    medians of %s alternating runs each; wall time of the whole command"
              % len(next(iter(busy.values()))["default_s"]))
        summary["busy"] = busy

    # Targets.
    def target(name, value, goal, ok, unit="x"):
        status = "n/a" if value is None else ("pass" if ok else "MISS")
        summary["targets"].append({"target": name, "value": value, "goal": goal,
                                   "status": status})
        v = "-" if value is None else ("%.2f%s" % (value, unit))
        print("  %-58s %10s  (goal %s)  %s" % (name, v, goal, status))

    def ratio(w, peer_rows, key="samples_per_s"):
        b = best(get("backprop", w, "forward" if w in INFERENCE else "step"), key)
        p = best(peer_rows, key)
        return (b[key] / p[key]) if (b and p) else None

    print()
    print("targets of issue 11 (float32 rows unless bf16 is named: backprop = its best "
          "train_step/bp_forward row over 1 and 2 threads; PyTorch = its best float32 row, "
          "either version, eager or compiled)")
    goals = (("W1", 2.0), ("W2", 20.0), ("W4", 3.0), ("W5", 1.5), ("W6", 2.0), ("W7", 1.5))
    for w, goal in goals:
        key = "steps_per_s" if w == "W2" else "samples_per_s"
        r = ratio(w, get("torch", w), key)
        unit = "steps/s" if w == "W2" else "tokens/s" if w == "W7" else "samples/s"
        target("%s %s, backprop / PyTorch best" % (w, unit), r, ">= %gx" % goal,
               r is not None and r >= goal)
    for w, _ in goals:
        bw = [x["peak_rss_kb"] for x in get("backprop", w, None, None, None)
              if x.get("peak_rss_kb")]
        tw = [x["peak_rss_kb"] for x in get("torch", w, None, None, None)
              if x.get("peak_rss_kb")]
        r = max(bw) / min(tw) if (bw and tw) else None
        target("%s peak RSS, backprop (largest row) / PyTorch (smallest)" % w, r, "< 1.0x",
               r is not None and r < 1.0)
    b = best(get("backprop", "W3", "step"))
    r = 100.0 * b["gflops"] / gemm2 if (b and gemm2) else None
    target("W3 GFLOP/s, backprop / oneDNN GEMM 2 threads", r, ">= 85%",
           r is not None and r >= 85, "%")
    for w in ("W1", "W3", "W5"):
        b1 = best(get("backprop", w, "step", 1))
        b2 = best(get("backprop", w, "step", 2))
        r = b2["samples_per_s"] / b1["samples_per_s"] if (b1 and b2) else None
        target("%s backprop 2 threads / 1 thread" % w, r, ">= 1.7x", r is not None and r >= 1.7)
    for t in (1, 2):
        f = best(get("backprop", "W1", "fit", t))
        st = best(get("backprop", "W1", "step", t))
        r = f["samples_per_s"] / st["samples_per_s"] if (f and st) else None
        target("W1 bp_fit / bp_train_step, %d thread%s" % (t, "s" if t > 1 else ""), r,
               ">= 0.97x", r is not None and r >= 0.97)
    for w in ("W3", "W5"):
        b16 = best(get("backprop", w, "step", None, "bf16"))
        b32 = best(get("backprop", w, "step"))
        r = b16["samples_per_s"] / b32["samples_per_s"] if (b16 and b32) else None
        target("%s bf16 / float32 (backprop, best rows)" % w, r, ">= 1.6x",
               r is not None and r >= 1.6)
    r = busy.get("busy_train", {}).get("ratio")
    target("wine, 2 busy processes: default threads / --threads 1", r, "<= 1.2x",
           r is not None and r <= 1.2)
    for w in ("W3", "W4", "W5", "W6"):
        b16 = best(get("backprop", w, "forward" if w in INFERENCE else "step", None, "bf16"))
        t16 = best(get("torch", w, None, None, "bf16"))
        if b16 and t16:
            print("    (%s in bf16: backprop %.0f samples/s, PyTorch autocast %.0f: %.2fx)"
                  % (w, b16["samples_per_s"], t16["samples_per_s"],
                     b16["samples_per_s"] / t16["samples_per_s"]))
    for w in ("W3", "W5"):
        r = mpi_speedup.get(w)
        target("%s bp_fit, 2 ranks x 1 thread / 1 rank x 1 thread (MPI)" % w, r, ">= 1.8x",
               r is not None and r >= 1.8)
    with open(os.path.join(dir_, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
