#!/usr/bin/python3
"""bench_torch.py - time PyTorch (CPU) on one workload of issue 4, print one JSON line.

    bench_torch.py W1|W2|W3|W4|W5|W6|W7 [--threads N] [--reps R] [--min-time S]
                   [--steps N] [--batch N] [--data DIR] [--seed N] [--foreach 0|1]
                   [--compile 0|1] [--stateful 0|1] [--precision f32|bf16]

The same networks, losses, batches and Adam(lr=1e-3) as bench_backprop:
  W1 784-256-128-10 relu, CrossEntropyLoss, batch 128, the 60,000 training images;
  W2 10-32-32-1 tanh, MSELoss, batch 32, the 10,000 synthetic rows of
     bench_common.h (same generator, same values);
  W3 784-2048-2048-10 relu, CrossEntropyLoss, batch 256, --steps steps per repetition;
  W4 the W1 network in eval() under torch.no_grad(), batches of 1000 over the
     10,000 test images;
  W5 the CNN of W5_SPEC on the training images as [1, 28, 28], CrossEntropyLoss,
     batch 128, --steps steps (default 40) per repetition;
  W6 the W5 network in eval() under torch.no_grad(), batches of 1000 over the
     10,000 test images;
  W7 character LSTM: nn.Embedding(96, 48), nn.LSTM(48, 256, batch_first=True),
     nn.Linear(256, 96) on windows of 64 characters of the fortunes text (read as
     bench_common.h's bench_text_ids does), CrossEntropyLoss over every step
     (the next character), batch 64 streams, --steps (20) steps per repetition;
     rates count tokens (64 x 64 a step). The text is cut into 64 equal streams,
     step k trains on window k of each with the LSTM's (h, c) carried from window
     k-1 and detached (truncated BPTT, as bp_net_set_stateful), from zero after
     the last window; --stateful 0 starts every window from zero.
Weights are re-initialized like backprop's default (W7: torch's own
Embedding and LSTM defaults, which backprop also uses, and Xavier uniform
with zero bias for the Linear): He uniform U(+-sqrt(6/fan_in))
for a Linear or Conv2d followed (through batchnorm, pooling, dropout, flatten)
by ReLU, Xavier uniform U(+-sqrt(6/(fan_in+fan_out))) otherwise (conv: fan_in =
in_ch*K*K, fan_out = out_ch*K*K), biases zero, batchnorm weight 1 and bias 0
(torch's own Linear/Conv2d default is different).
FLOPs: W1-W4 6 (training) or 2 (inference) x parameters per sample; W5/W6
count the conv and dense multiply-adds (MACs): 2 x MACs forward, 3 x that for
training; pooling, batchnorm, relu and dropout are not counted.
--precision bf16 runs the forward passes (and so the backward's products)
under torch.autocast("cpu", dtype=torch.bfloat16), torch's mixed precision:
the peer of backprop's --precision bf16 (not W7).
--compile 1 wraps the model in torch.compile (torch >= 2; compiled during the
warm-up); if that fails the script prints why and exits with status 3.
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
import contextlib  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import re  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
DEFAULT_TEXT = "/usr/share/games/fortunes"  # Debian package fortunes
TEXT_VOCAB = 96
W5_SPEC = ("conv(32,3,1,1) batchnorm relu maxpool(2) conv(64,3,1,1) batchnorm relu maxpool(2) "
           "flatten dense(128) relu dropout(0.3) dense(10)")
SKIP = 3  # exit status: this configuration cannot run here (e.g. no torch.compile)

WORKLOADS = {
    "W1": dict(sizes=[784, 256, 128, 10], act="relu", loss="ce", batch=128, train=True),
    "W2": dict(sizes=[10, 32, 32, 1], act="tanh", loss="mse", batch=32, train=True),
    "W3": dict(sizes=[784, 2048, 2048, 10], act="relu", loss="ce", batch=256, train=True),
    "W4": dict(sizes=[784, 256, 128, 10], act="relu", loss="ce", batch=1000, train=False),
    "W5": dict(spec=W5_SPEC, shape=(1, 28, 28), loss="ce", batch=128, train=True, steps=40),
    "W6": dict(spec=W5_SPEC, shape=(1, 28, 28), loss="ce", batch=1000, train=False),
    "W7": dict(text=True, seq=64, emb=48, hidden=256, loss="ce", batch=64, train=True, steps=20),
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


def text_ids(dir_):
    """bench_common.h's bench_text_ids: the regular files of dir_ (no symbolic
    links, no *.dat or *.u8) in byte order of their names, concatenated; '\\n'
    is id 0, bytes 32..126 ids 1..95, a tab a space, other bytes dropped."""
    names = sorted(os.listdir(dir_), key=lambda s: s.encode())
    raw = bytearray()
    for nm in names:
        if nm.startswith(".") or nm.endswith(".dat") or nm.endswith(".u8"):
            continue
        p = os.path.join(dir_, nm)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            raw += f.read()
    b = np.frombuffer(bytes(raw), dtype=np.uint8).copy()
    b[b == 9] = 32
    b = b[(b == 10) | ((b >= 32) & (b <= 126))]
    return np.where(b == 10, 0, b.astype(np.int64) - 31)


class CharLSTM(torch.nn.Module):
    def __init__(self, vocab, emb, hidden):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, emb)
        self.lstm = torch.nn.LSTM(emb, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, vocab)
        with torch.no_grad():
            torch.nn.init.xavier_uniform_(self.out.weight)
            self.out.bias.zero_()

    def forward(self, x, state=None):
        h, state = self.lstm(self.emb(x), state)
        return self.out(h), state


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


def build_spec(spec, shape):
    """nn.Sequential of a backprop spec (conv, batchnorm, relu, maxpool,
    avgpool, flatten, dense, dropout) on per-sample `shape`, initialized like
    backprop's default; returns it and the multiply-adds of its conv and
    dense layers per sample."""
    words = spec.split()
    layers, macs, shape = [], 0, tuple(shape)
    for i, word in enumerate(words):
        m = re.match(r"^([a-z_]+)(?:\(([^)]*)\))?$", word)
        name, args = m.group(1), [float(a) for a in m.group(2).split(",")] if m.group(2) else []
        if name in ("conv", "dense"):
            if name == "conv":
                c_out, k = int(args[0]), int(args[1])
                stride = int(args[2]) if len(args) > 2 else 1
                pad = int(args[3]) if len(args) > 3 else 0
                mod = torch.nn.Conv2d(shape[0], c_out, k, stride=stride, padding=pad)
                oh = (shape[1] + 2 * pad - k) // stride + 1
                ow = (shape[2] + 2 * pad - k) // stride + 1
                macs += c_out * oh * ow * shape[0] * k * k
                shape = (c_out, oh, ow)
            else:
                mod = torch.nn.Linear(shape[0], int(args[0]))
                macs += shape[0] * int(args[0])
                shape = (int(args[0]),)
            nxt = next((w for w in words[i + 1:] if not re.match(
                r"^(batchnorm|maxpool|avgpool|global_avgpool|dropout|flatten)\b", w)), "")
            with torch.no_grad():
                if re.match(r"^(relu|leaky_relu)\b", nxt):  # He uniform: sqrt(6 / fan_in)
                    torch.nn.init.kaiming_uniform_(mod.weight, nonlinearity="relu")
                else:  # Xavier uniform: sqrt(6 / (fan_in + fan_out))
                    torch.nn.init.xavier_uniform_(mod.weight)
                mod.bias.zero_()
        elif name == "batchnorm":
            mod = (torch.nn.BatchNorm2d if len(shape) == 3 else torch.nn.BatchNorm1d)(shape[0])
        elif name == "relu":
            mod = torch.nn.ReLU()
        elif name in ("maxpool", "avgpool"):
            k = int(args[0])
            stride = int(args[1]) if len(args) > 1 else k
            mod = (torch.nn.MaxPool2d if name == "maxpool" else torch.nn.AvgPool2d)(k, stride)
            shape = (shape[0], (shape[1] - k) // stride + 1, (shape[2] - k) // stride + 1)
        elif name == "flatten":
            mod = torch.nn.Flatten()
            shape = (int(np.prod(shape)),)
        elif name == "dropout":
            mod = torch.nn.Dropout(args[0])
        else:
            raise SystemExit(f"bench_torch: unknown spec word {word}")
        layers.append(mod)
    return torch.nn.Sequential(*layers), macs


def compile_failed(a, e):
    """After an exception in the warm-up: skip (exit 3) if it came from
    torch.compile, else re-raise."""
    if not a.compile:
        raise e
    msg = str(e).strip().splitlines()
    print("bench_torch: torch.compile failed: %s: %s" % (type(e).__name__, msg[0] if msg else ""),
          file=sys.stderr)
    sys.exit(SKIP)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=0, help="W3 (60) / W5 (40) steps per repetition")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("BP_BENCH_DATA", DEFAULT_DATA))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--foreach", type=int, default=-1,
                    help="Adam foreach implementation: 1, 0, or -1 for torch's default")
    ap.add_argument("--compile", type=int, default=0, help="1: torch.compile the model")
    ap.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                    help="bf16: the forward under torch.autocast('cpu', torch.bfloat16)")
    ap.add_argument("--stateful", type=int, default=1,
                    help="W7: 1 carries (h, c) between windows (detached), 0 starts each from zero")
    a = ap.parse_args()
    w = WORKLOADS[a.workload]
    batch = a.batch or w["batch"]
    a.steps = a.steps or w.get("steps", 60)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    if w.get("text"):
        if a.compile:
            print("bench_torch: no torch.compile row for W7", file=sys.stderr)
            sys.exit(SKIP)
        if a.precision != "f32":
            print("bench_torch: no bf16 row for W7", file=sys.stderr)
            sys.exit(SKIP)
        return text_main(a, w, batch)
    if a.workload == "W2":
        x, y = w2_data(10000, a.seed)
    else:
        x, y = fashion(a.data, w["train"])
    n = x.shape[0]
    if "spec" in w:
        x = x.reshape((n,) + w["shape"])
        model, macs = build_spec(w["spec"], w["shape"])
        flop_per_sample = (3 if w["train"] else 1) * 2 * macs
    else:
        model, macs = build(w["sizes"], w["act"]), None
    params = sum(p.numel() for p in model.parameters())
    if macs is None:
        flop_per_sample = (6 if w["train"] else 2) * params
    net = model
    if a.compile:
        if not hasattr(torch, "compile"):
            print("bench_torch: torch %s has no torch.compile" % torch.__version__,
                  file=sys.stderr)
            sys.exit(SKIP)
        net = torch.compile(model)
    rates, step_rates, secs = [], [], []
    last_loss = float("nan")

    def autocast():
        """torch's mixed precision on a CPU (bf16 products, float32 master weights)."""
        if a.precision == "f32":
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=torch.bfloat16)

    if a.precision == "bf16" and not hasattr(torch, "autocast"):
        print("bench_torch: torch %s has no torch.autocast" % torch.__version__, file=sys.stderr)
        sys.exit(SKIP)

    if w["train"]:
        lossf = torch.nn.CrossEntropyLoss() if w["loss"] == "ce" else torch.nn.MSELoss()
        kw = {} if a.foreach < 0 else {"foreach": bool(a.foreach)}
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
        model.train()
        state = {"perm": None, "pos": n}

        def step(idx):
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = lossf(net(xb), yb)
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

        w3 = a.workload in ("W3", "W5")  # blocks of --steps steps
        try:
            if w3:
                fixed_steps(3)
            else:
                epoch()
        except Exception as e:  # noqa: BLE001 (torch.compile raises many kinds)
            compile_failed(a, e)
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
        if a.compile:
            try:
                with torch.no_grad():
                    net(x[:batch])
            except Exception as e:  # noqa: BLE001
                compile_failed(a, e)
        with torch.no_grad():
            for r in range(-1, a.reps):
                steps = samples = 0
                t0 = time.perf_counter()
                while True:
                    for s in range(0, n, batch):
                        with autocast():
                            out = net(x[s:s + batch])
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
        "threads": a.threads, "batch": batch, "params": params, "macs": macs,
        "flop_per_sample": flop_per_sample, "reps": a.reps, "compile": bool(a.compile),
        "rep_seconds": [round(s, 6) for s in secs], "rates": [round(r, 3) for r in rates],
        "samples_per_s": best, "samples_per_s_median": statistics.median(rates),
        "steps_per_s": sbest, "steps_per_s_median": statistics.median(step_rates),
        "us_per_step": 1e6 / sbest, "gflops": best * flop_per_sample * 1e-9,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "foreach": a.foreach, "precision": a.precision,
    }
    if w["train"]:
        rec["loss_last_batch"] = last_loss
    rec["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(rec))


def text_main(a, w, batch):
    """W7: the character LSTM, blocks of --steps training steps."""
    ids = text_ids(os.environ.get("BP_BENCH_TEXT", DEFAULT_TEXT))
    T, V = w["seq"], TEXT_VOCAB
    stream_len = (len(ids) - 1) // batch
    windows = (stream_len - 1) // T
    text = torch.from_numpy(ids[:batch * stream_len].reshape(batch, stream_len))
    model = CharLSTM(V, w["emb"], w["hidden"])
    params = sum(p.numel() for p in model.parameters())
    H, E = w["hidden"], w["emb"]
    # forward FLOPs per token: the LSTM's weights and the Linear's, 2 per multiply-add
    flop_per_token = 3 * 2 * (4 * H * (E + H) + H * V)
    lossf = torch.nn.CrossEntropyLoss()
    kw = {} if a.foreach < 0 else {"foreach": bool(a.foreach)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
    model.train()
    st = {"k": 0, "state": None}

    def step():
        if st["k"] >= windows:
            st["k"], st["state"] = 0, None
        o = st["k"] * T
        xb, yb = text[:, o:o + T], text[:, o + 1:o + T + 1]
        st["k"] += 1
        opt.zero_grad(set_to_none=True)
        logits, state = model(xb, st["state"])
        loss = lossf(logits.reshape(-1, V), yb.reshape(-1))
        loss.backward()
        opt.step()
        if a.stateful:
            st["state"] = tuple(s.detach() for s in state)
        return loss

    for _ in range(3):  # warm-up
        step()
    rates, step_rates, secs = [], [], []
    loss = None
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        t = time.perf_counter() - t0
        secs.append(t)
        rates.append(a.steps * batch * T / t)
        step_rates.append(a.steps / t)
    best, sbest = max(rates), max(step_rates)
    rec = {
        "prog": "torch", "workload": a.workload, "api": "loop", "threads": a.threads,
        "batch": batch, "params": params, "macs": None, "flop_per_sample": flop_per_token,
        "reps": a.reps, "compile": False,
        "rep_seconds": [round(s, 6) for s in secs], "rates": [round(r, 3) for r in rates],
        "samples_per_s": best, "samples_per_s_median": statistics.median(rates),
        "steps_per_s": sbest, "steps_per_s_median": statistics.median(step_rates),
        "us_per_step": 1e6 / sbest, "gflops": best * flop_per_token * 1e-9,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "foreach": a.foreach, "loss_last_batch": float(loss.detach()), "unit": "token",
        "seq": T, "vocab": V, "text_tokens": int(len(ids)), "stateful": a.stateful,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }
    rec["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
