#!/usr/bin/python3
"""bench_torch.py - time PyTorch (CPU) on one workload of issue 4, print one JSON line.

    bench_torch.py W1|W2|W3|W4 [--threads N] [--reps R] [--min-time S]
                   [--steps N] [--batch N] [--data DIR] [--seed N] [--foreach 0|1]

The same networks, losses, batches and Adam(lr=1e-3) as bench_backprop:
  W1 784-256-128-10 relu, CrossEntropyLoss, batch 128, the 60,000 training images;
  W2 10-32-32-1 tanh, MSELoss, batch 32, the 10,000 synthetic rows of
     bench_common.h (same generator, same values);
  W3 784-2048-2048-10 relu, CrossEntropyLoss, batch 256, --steps steps per repetition;
  W4 the W1 network in eval() under torch.no_grad(), batches of 1000 over the
     10,000 test images.
Weights are re-initialized like backprop's default: He uniform U(+-sqrt(6/in))
for a Linear followed by ReLU, Xavier uniform U(+-sqrt(6/(in+out))) otherwise,
biases zero (torch's own Linear default is different).
The loop is the usual one: every epoch torch.randperm, then per batch
x[idx], y[idx] (a gather), zero_grad(set_to_none=True), forward, loss,
backward, step. The data are float32 tensors in memory before timing.
A repetition runs whole epochs (W3: --steps steps; W4: whole passes) until
--min-time seconds have passed, after one warm-up epoch (W3: 3 steps, W4: 1 pass).
Threads: torch.set_num_threads(N); run.sh also sets OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS to N. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE must not be set
(they pick a slower OpenBLAS kernel); if they are, the script re-executes
itself without them.
"""
import os
import sys

_BAD_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(k in os.environ for k in _BAD_ENV):
    env = {k: v for k, v in os.environ.items() if k not in _BAD_ENV}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"

WORKLOADS = {
    "W1": dict(sizes=[784, 256, 128, 10], act="relu", loss="ce", batch=128, train=True),
    "W2": dict(sizes=[10, 32, 32, 1], act="tanh", loss="mse", batch=32, train=True),
    "W3": dict(sizes=[784, 2048, 2048, 10], act="relu", loss="ce", batch=256, train=True),
    "W4": dict(sizes=[784, 256, 128, 10], act="relu", loss="ce", batch=1000, train=False),
}


def read_idx(path):
    """Unsigned-byte IDX (gzip or plain) -> numpy uint8 array of its shape."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise SystemExit(f"bench_torch: {path}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def fashion(dir_, train):
    pre = "train" if train else "t10k"
    img = read_idx(os.path.join(dir_, f"{pre}-images-idx3-ubyte.gz"))
    lab = read_idx(os.path.join(dir_, f"{pre}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(img.reshape(img.shape[0], -1).astype(np.float32))
    x.div_(255.0)
    y = torch.from_numpy(lab.astype(np.int64))
    return x, y


def splitmix_stream(seed, count):
    """The first `count` outputs of bench_common.h's splitmix64 stream."""
    k = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def w2_data(n, seed):
    """bench_w2_data of bench_common.h, value for value."""
    u = (splitmix_stream(seed, n * 10) >> np.uint64(40)).astype(np.float64) / 16777216.0
    v = (2.0 * u - 1.0).reshape(n, 10)
    x = v.astype(np.float32)
    xd = x.astype(np.float64)
    t = np.sin(3.0 * xd[:, 0]) + xd[:, 1] * xd[:, 2] - 0.5 * xd[:, 3] * xd[:, 3]
    for j in range(4, 10):
        t = t + 0.1 * xd[:, j]
    return torch.from_numpy(x), torch.from_numpy(t.astype(np.float32).reshape(n, 1))


def build(sizes, act):
    layers = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        with torch.no_grad():
            if not last and act == "relu":  # He uniform: sqrt(6 / in)
                torch.nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
            else:  # Xavier uniform: sqrt(6 / (in + out))
                torch.nn.init.xavier_uniform_(lin.weight)
            lin.bias.zero_()
        layers.append(lin)
        if not last:
            layers.append(torch.nn.ReLU() if act == "relu" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("BP_BENCH_DATA", DEFAULT_DATA))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--foreach", type=int, default=-1,
                    help="Adam foreach implementation: 1, 0, or -1 for torch's default")
    a = ap.parse_args()
    w = WORKLOADS[a.workload]
    batch = a.batch or w["batch"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    if a.workload == "W2":
        x, y = w2_data(10000, a.seed)
    else:
        x, y = fashion(a.data, w["train"])
    n = x.shape[0]
    model = build(w["sizes"], w["act"])
    params = sum(p.numel() for p in model.parameters())
    flop_per_sample = (6 if w["train"] else 2) * params
    rates, step_rates, secs = [], [], []
    last_loss = float("nan")

    if w["train"]:
        lossf = torch.nn.CrossEntropyLoss() if w["loss"] == "ce" else torch.nn.MSELoss()
        kw = {} if a.foreach < 0 else {"foreach": bool(a.foreach)}
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
        model.train()
        state = {"perm": None, "pos": n}

        def step(idx):
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xb), yb)
            loss.backward()
            opt.step()
            return loss

        def epoch():
            perm = torch.randperm(n)
            steps = 0
            loss = None
            for s in range(0, n, batch):
                loss = step(perm[s:s + batch])
                steps += 1
            return steps, n, loss

        def fixed_steps(k):
            loss = None
            for _ in range(k):
                if state["pos"] + batch > n:
                    state["perm"], state["pos"] = torch.randperm(n), 0
                idx = state["perm"][state["pos"]:state["pos"] + batch]
                state["pos"] += batch
                loss = step(idx)
            return k, k * batch, loss

        w3 = a.workload == "W3"
        if w3:
            fixed_steps(3)
        else:
            epoch()
        for _ in range(a.reps):
            steps = samples = 0
            t0 = time.perf_counter()
            while True:
                st, sa, loss = fixed_steps(a.steps) if w3 else epoch()
                steps, samples = steps + st, samples + sa
                t = time.perf_counter() - t0
                if w3 or t >= a.min_time:
                    break
            secs.append(t)
            rates.append(samples / t)
            step_rates.append(steps / t)
            last_loss = float(loss.detach())  # the last batch's loss (no per-step sync)
    else:
        model.eval()
        checksum = 0.0
        with torch.no_grad():
            for r in range(-1, a.reps):
                steps = samples = 0
                t0 = time.perf_counter()
                while True:
                    for s in range(0, n, batch):
                        out = model(x[s:s + batch])
                        checksum += float(out[0, 0])
                        steps += 1
                        samples += out.shape[0]
                    t = time.perf_counter() - t0
                    if r < 0 or t >= a.min_time:
                        break
                if r >= 0:
                    secs.append(t)
                    rates.append(samples / t)
                    step_rates.append(steps / t)

    best, sbest = max(rates), max(step_rates)
    rec = {
        "prog": "torch", "workload": a.workload, "api": "loop" if w["train"] else "forward",
        "threads": a.threads, "batch": batch, "params": params,
        "flop_per_sample": flop_per_sample, "reps": a.reps,
        "rep_seconds": [round(s, 6) for s in secs], "rates": [round(r, 3) for r in rates],
        "samples_per_s": best, "samples_per_s_median": statistics.median(rates),
        "steps_per_s": sbest, "steps_per_s_median": statistics.median(step_rates),
        "us_per_step": 1e6 / sbest, "gflops": best * flop_per_sample * 1e-9,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "foreach": a.foreach,
    }
    if w["train"]:
        rec["loss_last_batch"] = last_loss
    rec["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
