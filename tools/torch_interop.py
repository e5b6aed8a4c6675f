#!/usr/bin/python3
"""torch_interop.py - check that backprop's model files and PyTorch agree.

Run with Debian's Python, which has torch and numpy:  /usr/bin/python3.
No `safetensors` package is needed: the format is read and written by hand
(8-byte little-endian header length N, N bytes of JSON, raw data).

Two directions:

  /usr/bin/python3 tools/torch_interop.py fixture [--out-dir tests/fixtures]
      PyTorch -> C. Builds nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
      nn.Linear(8, 3)) with torch.manual_seed(0), writes its state_dict to
      torch_model.safetensors (a plain state dict: no spec metadata) and its
      outputs on fixed inputs to torch_model_io.txt. Then the same for a
      CNN (CNN_SPEC on CNN_SHAPE, built by build_sequential: Conv2d,
      BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, Tanh, AdaptiveAvgPool2d,
      Flatten, Dropout, Linear, BatchNorm1d) whose batchnorms got random
      weight and bias and ran CNN_TRAIN_BATCHES training-mode forwards, so
      running_mean, running_var and num_batches_tracked (int64, written as
      I64) are not torch's defaults: torch_cnn.safetensors and
      torch_cnn_io.txt (inputs flattened C*H*W per row; eval() outputs).
      tests/test_safetensors.c loads both with bp_net_load_weights and
      compares. Run it only when the fixture must change (the files are
      committed); the output is deterministic for a given torch version
      (the float32 outputs may differ in their last bits on another CPU).

  /usr/bin/python3 tools/torch_interop.py check MODEL IO
  /usr/bin/python3 tools/torch_interop.py check --writer TEST_BINARY [--workdir DIR]
      C -> PyTorch. Reads a model saved by bp_net_save (MODEL) and a text
      file of inputs and the C library's outputs (IO; first line "n in out",
      then one row of inputs followed by outputs per sample, '#' comments
      allowed). With --writer, runs `TEST_BINARY --write-interop DIR` (the
      test_safetensors binary) to produce DIR/c_model.safetensors,
      DIR/c_model_io.txt, DIR/c_cnn.safetensors and DIR/c_cnn_io.txt,
      and the recurrent DIR/c_lm.* ("embedding(6,20) lstm(16) dense(20)" on
      9 token ids) and DIR/c_gru.* ("gru(8) last dense(3)" on [7, 4])
      first, and checks the four models. Rebuilds the nn.Sequential from
      the "spec" and "input_shape" metadata (per-sample shape "C,H,W" or
      "T,F"; absent: flat "inputs", token ids [T] for an embedding), loads
      the tensors with load_state_dict(strict=True)
      (batchnorm's num_batches_tracked is I64 in the file, int64 in torch),
      runs it in eval() mode and compares to 1e-5. For a model with
      batchnorms it also checks that the running statistics are not
      torch's defaults and that they matter (with reset statistics the
      outputs move by more than 1e-3). With --writer it also runs SNIPPET,
      the self-contained lines that load the two recurrent models (below),
      and compares their outputs too. Exits non-zero on any mismatch.
      ctest runs this (test "torch_interop") when torch is installed.

Spec words -> modules (shared/DESIGN.md): dense(N) Linear(in, N);
conv(C,K[,s[,p]]) Conv2d(in_ch, C, K, stride=s, padding=p); maxpool(K[,s])
MaxPool2d(K, s) and avgpool(K[,s]) AvgPool2d(K, s) (s defaults to K);
global_avgpool AdaptiveAvgPool2d(1); flatten Flatten(); batchnorm
BatchNorm2d(C) on [C, H, W], BatchNorm1d(F) on [F]; dropout(p) Dropout(p);
the activations; softmax Softmax(dim=-1); rnn(H), lstm(H), gru(H)
RNN/LSTM/GRU(in, H, batch_first=True) in a subclass whose forward returns
the output sequence only (torch's return the tuple (output, state)), so
the keys stay "{i}.weight_ih_l0" ...; last Last() (x[:, -1]);
embedding(D,V) Embedding(V, D), fed int64 ids.

Loading a backprop CNN in your own code (what `check` does):

    tensors, meta, _ = read_safetensors("model.safetensors")
    shape = [int(d) for d in meta["input_shape"].split(",")]
    model = build_sequential(meta["spec"], int(meta["inputs"]), shape)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    y = model(x)          # x [n, C, H, W] float32
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import torch
from torch import nn

TOL = 1e-5


# --------------------------------------------------------------------------
# safetensors by hand
# --------------------------------------------------------------------------

def read_safetensors(path):
    """Return (tensors dict name -> torch.Tensor, metadata dict, header
    length), checking the layout backprop promises: F32 tensors (and I64:
    batchnorm's num_batches_tracked, shape []) whose offsets are contiguous
    in header order."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    expect = 0
    for name, info in header.items():
        dtypes = {"F32": ("<f4", np.float32), "I64": ("<i8", np.int64)}
        if info["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']}")
        raw_dtype, np_dtype = dtypes[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = info["shape"]
        count = int(np.prod(shape)) if shape else 1
        if end - begin != np.dtype(raw_dtype).itemsize * count or end > len(data):
            raise ValueError(f"{path}: tensor {name}: bad offsets {begin}, {end}")
        if begin != expect:
            raise ValueError(f"{path}: tensor {name}: offsets not contiguous")
        expect = end
        arr = np.frombuffer(data, dtype=raw_dtype, count=count, offset=begin).reshape(shape)
        tensors[name] = torch.from_numpy(arr.astype(np_dtype).copy())
    return tensors, meta, n


def write_safetensors(path, tensors, metadata=None):
    """Write a dict name -> tensor as safetensors, data in dict order: int64
    tensors (num_batches_tracked) as I64, everything else as F32."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        i64 = t.dtype == torch.int64
        arr = t.detach().cpu().contiguous().numpy().astype("<i8" if i64 else "<f4")
        b = arr.tobytes()
        header[name] = {"dtype": "I64" if i64 else "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in chunks:
            f.write(b)


def write_io(path, x, y, comment):
    with open(path, "w") as f:
        f.write(f"# {comment}\n")
        f.write(f"{x.shape[0]} {x.shape[1]} {y.shape[1]}\n")
        for xr, yr in zip(x.tolist(), y.tolist()):
            f.write(" ".join("%.9g" % v for v in xr + yr) + "\n")


def read_io(path):
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and not ln.startswith("#")]
    n, nin, nout = (int(v) for v in lines[0].split())
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[1:1 + n]],
                    dtype=np.float64)
    if rows.shape != (n, nin + nout):
        raise ValueError(f"{path}: expected {n} rows of {nin + nout} numbers")
    return rows[:, :nin], rows[:, nin:]


# --------------------------------------------------------------------------
# spec -> nn.Sequential
# --------------------------------------------------------------------------

# torch's recurrent modules return (output, state): these keep the output
# sequence [n, T, H] only. They add no attribute, so the state_dict keys stay
# "{i}.weight_ih_l0", "{i}.weight_hh_l0", "{i}.bias_ih_l0", "{i}.bias_hh_l0".
class RNN(nn.RNN):
    def forward(self, x):
        return super().forward(x)[0]


class LSTM(nn.LSTM):
    def forward(self, x):
        return super().forward(x)[0]


class GRU(nn.GRU):
    def forward(self, x):
        return super().forward(x)[0]


class Last(nn.Module):
    """The spec word "last": x[:, -1], the final step of [n, T, F]."""

    def forward(self, x):
        return x[:, -1]


RECURRENT = {"rnn": RNN, "lstm": LSTM, "gru": GRU}

WORD = re.compile(r"^([a-z_]+)(?:\(\s*([^)]*?)\s*\))?$")


def build_sequential(spec, inputs, input_shape=None):
    """nn.Sequential of a stored spec, on per-sample inputs of shape
    `input_shape` ([C, H, W], [T, F], or [T] token ids for a first
    embedding; None: flat [inputs]). The module indices are the spec's
    layer indices (the stored spec spells every flatten). An embedding
    takes int64 ids: convert backprop's float-stored ids with .long()."""
    layers = []
    shape = tuple(input_shape) if input_shape else (inputs,)
    for pos, word in enumerate(spec.split()):
        m = WORD.match(word)
        if not m:
            raise ValueError(f"spec word {word!r} does not parse")
        kind, arg = m.group(1), m.group(2)
        args = [a.strip() for a in arg.split(",")] if arg else []
        if kind == "dense":
            units = int(arg)
            if len(shape) == 3:
                raise ValueError(f"spec word {word!r} on an image {list(shape)}: no flatten")
            layers.append(nn.Linear(shape[-1], units))
            shape = shape[:-1] + (units,)
        elif kind == "conv":
            if len(shape) != 3:
                raise ValueError(f"spec word {word!r} on {list(shape)}: not an image")
            c, k = int(args[0]), int(args[1])
            stride = int(args[2]) if len(args) > 2 else 1
            pad = int(args[3]) if len(args) > 3 else 0
            layers.append(nn.Conv2d(shape[0], c, k, stride=stride, padding=pad))
            shape = (c, (shape[1] + 2 * pad - k) // stride + 1,
                     (shape[2] + 2 * pad - k) // stride + 1)
        elif kind in ("maxpool", "avgpool"):
            if len(shape) != 3:
                raise ValueError(f"spec word {word!r} on {list(shape)}: not an image")
            k = int(args[0])
            stride = int(args[1]) if len(args) > 1 else k
            layers.append((nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(k, stride))
            shape = (shape[0], (shape[1] - k) // stride + 1, (shape[2] - k) // stride + 1)
        elif kind == "global_avgpool":
            if len(shape) != 3:
                raise ValueError(f"spec word {word!r} on {list(shape)}: not an image")
            layers.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif kind == "flatten":
            layers.append(nn.Flatten())
            shape = (int(np.prod(shape)),)
        elif kind == "batchnorm":
            if len(shape) == 3:
                layers.append(nn.BatchNorm2d(shape[0], eps=1e-5, momentum=0.1))
            elif len(shape) == 1:
                layers.append(nn.BatchNorm1d(shape[0], eps=1e-5, momentum=0.1))
            else:
                raise ValueError(f"spec word {word!r} on {list(shape)}: no PyTorch mapping")
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "leaky_relu":
            layers.append(nn.LeakyReLU(float(arg) if arg else 0.01))
        elif kind == "sigmoid":
            layers.append(nn.Sigmoid())
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "softmax":
            layers.append(nn.Softmax(dim=-1))
        elif kind == "dropout":
            layers.append(nn.Dropout(float(arg) if arg else 0.5))
        elif kind == "identity":
            layers.append(nn.Identity())
        elif kind in RECURRENT:
            if len(shape) != 2:
                raise ValueError(f"spec word {word!r} on {list(shape)}: not a sequence [T, F]")
            units = int(arg)
            layers.append(RECURRENT[kind](shape[1], units, batch_first=True))
            shape = (shape[0], units)
        elif kind == "last":
            if len(shape) != 2:
                raise ValueError(f"spec word {word!r} on {list(shape)}: not a sequence [T, F]")
            layers.append(Last())
            shape = (shape[1],)
        elif kind == "embedding":
            if pos != 0 or len(shape) != 1 or len(args) != 2:
                raise ValueError(f"spec word {word!r}: embedding(D,V) first, on ids [T]")
            dim, vocab = int(args[0]), int(args[1])
            layers.append(nn.Embedding(vocab, dim))
            shape = (shape[0], dim)
        else:
            raise ValueError(f"spec word {word!r}: no PyTorch mapping")
        if min(shape) < 1:
            raise ValueError(f"spec word {word!r}: output shape {list(shape)}")
    return nn.Sequential(*layers)


# The few lines of torch that load a saved recurrent model with strict=True,
# self-contained (no safetensors package, no backprop code). `check` runs
# this very text in the folder where test_safetensors wrote c_lm.* and
# c_gru.* and compares lm(ids) and clf(x) with the C library's outputs.
SNIPPET = '''\
import json, math, struct, torch
from torch import nn

class LSTM(nn.LSTM):  # the output sequence only (nn.RNN alike)
    def forward(self, x): return super().forward(x)[0]

class GRU(nn.GRU):
    def forward(self, x): return super().forward(x)[0]

class Last(nn.Module):  # the spec word "last": the final step
    def forward(self, x): return x[:, -1]

def state_dict(path):  # safetensors: u64 header length, JSON header, float32 data
    raw = bytearray(open(path, "rb").read())
    n = struct.unpack("<Q", raw[:8])[0]
    return {k: torch.frombuffer(raw, dtype=torch.float32, offset=8 + n + v["data_offsets"][0],
                                count=math.prod(v["shape"])).reshape(v["shape"])
            for k, v in json.loads(raw[8:8 + n]).items() if k != "__metadata__"}

lm = nn.Sequential(nn.Embedding(20, 6), LSTM(6, 16, batch_first=True), nn.Linear(16, 20))
lm.load_state_dict(state_dict("c_lm.safetensors"), strict=True)   # embedding(6,20) lstm(16) dense(20)
clf = nn.Sequential(GRU(4, 8, batch_first=True), Last(), nn.Linear(8, 3))
clf.load_state_dict(state_dict("c_gru.safetensors"), strict=True)  # gru(8) last dense(3), x [n, 7, 4]
# lm(ids.long()): token ids [n, 9] -> logits [n, 9, 20];  clf(x) -> [n, 3]
'''


def parse_shape(text):
    """ "3,20,20" -> [3, 20, 20] (None for None)."""
    return [int(d) for d in text.split(",")] if text else None


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------

# The CNN of both directions: every image layer kind, batchnorm on images
# and on features, pool strides other than K, conv padding and stride.
CNN_SPEC = ("conv(4,3,2,1) batchnorm relu maxpool(3,2) conv(6,3,1,1) relu avgpool(2) "
            "conv(8,3,1,1) batchnorm tanh global_avgpool flatten dropout(0.25) dense(10) "
            "batchnorm relu dense(4)")
CNN_SHAPE = (3, 20, 20)
CNN_TRAIN_BATCHES = 7


def stats_matter(model, x):
    """Largest change of the eval() outputs on x when every batchnorm's
    running statistics are reset to torch's defaults (0 without batchnorm)."""
    bns = [m for m in model if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    if not bns:
        return 0.0
    import copy
    other = copy.deepcopy(model)
    for m in other:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_running_stats()
    with torch.no_grad():
        return float((model(x) - other(x)).abs().max())


def cmd_fixture(args):
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(8, 4) * 1.5
    model.eval()
    with torch.no_grad():
        y = model(x)
    mpath = os.path.join(args.out_dir, "torch_model.safetensors")
    iopath = os.path.join(args.out_dir, "torch_model_io.txt")
    write_safetensors(mpath, model.state_dict())
    write_io(iopath, x.numpy(), y.numpy(),
             "tools/torch_interop.py fixture: nn.Sequential(Linear(4,8), ReLU(), "
             "Linear(8,3)), seed 0; inputs then outputs per row")
    # Self-check: our reader gives back what we wrote.
    back, _, _ = read_safetensors(mpath)
    for k, v in model.state_dict().items():
        assert torch.equal(back[k], v), k
    print(f"wrote {mpath} and {iopath}")

    # The CNN: random batchnorm affine parameters, running statistics from
    # training-mode forwards (under no_grad: only the buffers change).
    torch.manual_seed(1)
    model = build_sequential(CNN_SPEC, int(np.prod(CNN_SHAPE)), CNN_SHAPE)
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features))
                m.bias.copy_(0.2 * torch.randn(m.num_features))
        model.train()
        for _ in range(CNN_TRAIN_BATCHES):
            model(torch.randn((16,) + CNN_SHAPE) * 2 + 0.5)
    model.eval()
    x = torch.randn((8,) + CNN_SHAPE) * 2 + 0.5
    with torch.no_grad():
        y = model(x)
    moved = stats_matter(model, x)
    assert moved > 1e-2, f"running statistics barely matter ({moved})"
    mpath = os.path.join(args.out_dir, "torch_cnn.safetensors")
    iopath = os.path.join(args.out_dir, "torch_cnn_io.txt")
    state = model.state_dict()
    assert state["1.num_batches_tracked"].dtype == torch.int64
    write_safetensors(mpath, state)
    write_io(iopath, x.reshape(x.shape[0], -1).numpy(), y.numpy(),
             "tools/torch_interop.py fixture: build_sequential(\"%s\") on [%s], seed 1, "
             "%d training-mode batches; inputs (C*H*W per row) then eval() outputs per row"
             % (CNN_SPEC, ", ".join(str(d) for d in CNN_SHAPE), CNN_TRAIN_BATCHES))
    back, _, _ = read_safetensors(mpath)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    print(f"wrote {mpath} and {iopath} (reset running statistics move the outputs "
          f"by {moved:.3g})")
    return 0


def check_model(model_path, io_path):
    """Load one C-saved model into torch and compare; returns failures."""
    tensors, meta, hlen = read_safetensors(model_path)
    failures = []
    if hlen % 8:
        failures.append(f"header length {hlen} is not a multiple of 8")
    if meta.get("format") != "backprop/1":
        failures.append(f"format metadata {meta.get('format')!r}")
    spec, inputs = meta.get("spec"), meta.get("inputs")
    if spec is None or inputs is None:
        return [f"{model_path}: no spec/inputs metadata"]
    shape = parse_shape(meta.get("input_shape"))
    model = build_sequential(spec, int(inputs), shape)
    # Strict: every key present with the right shape, nothing extra.
    model.load_state_dict(tensors, strict=True)
    model.eval()
    x, y_c = read_io(io_path)
    xt = torch.tensor(x, dtype=torch.float32)
    if shape:
        xt = xt.reshape([xt.shape[0]] + shape)
    if isinstance(model[0], nn.Embedding):
        xt = xt.long()  # backprop stores token ids as floats
    with torch.no_grad():
        y_t = model(xt).reshape(xt.shape[0], -1).double().numpy()
    name = os.path.basename(model_path)
    if y_t.shape != y_c.shape:
        failures.append(f"{name}: output shape {y_t.shape} vs C {y_c.shape}")
    else:
        worst = float(np.max(np.abs(y_t - y_c)))
        if not worst <= TOL:
            failures.append(f"{name}: outputs differ by {worst:.3g} (tolerance {TOL})")
        print(f"{name}: spec: {spec}\n  input_shape: {shape or [int(inputs)]}\n"
              f"  keys: {', '.join(tensors)}\n"
              f"  max |torch - C| = {worst:.3g} over {y_c.size} outputs (tolerance {TOL})")
    bns = [(i, m) for i, m in enumerate(model)
           if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for i, m in bns:
        counter = tensors[f"{i}.num_batches_tracked"]
        if counter.dtype != torch.int64 or m.num_batches_tracked.dtype != torch.int64:
            failures.append(f"{name}: {i}.num_batches_tracked is {counter.dtype}")
        if not (torch.all(m.running_var != 1) and torch.all(m.running_mean != 0)
                and int(m.num_batches_tracked) > 0):
            failures.append(f"{name}: batchnorm {i} has default running statistics: "
                            "the check would not see them")
        print(f"  {i}: {type(m).__name__}({m.num_features}) num_batches_tracked "
              f"{int(m.num_batches_tracked)}, running_var {m.running_var[:3].tolist()}...")
    if bns:
        moved = stats_matter(model, xt)
        print(f"  reset running statistics move the outputs by {moved:.3g}")
        if not moved > 1e-3:
            failures.append(f"{name}: the running statistics do not matter ({moved:.3g})")
    return failures


def check_snippet(workdir):
    """Run SNIPPET in workdir (next to c_lm.* and c_gru.*) and compare its
    two models with the C outputs; returns failures."""
    failures = []
    here = os.getcwd()
    ns = {}
    try:
        os.chdir(workdir)
        exec(compile(SNIPPET, "SNIPPET", "exec"), ns)
    finally:
        os.chdir(here)
    for model, name, shape in ((ns["lm"], "c_lm", None), (ns["clf"], "c_gru", [7, 4])):
        x, y_c = read_io(os.path.join(workdir, f"{name}_io.txt"))
        xt = torch.tensor(x, dtype=torch.float32)
        xt = xt.reshape([xt.shape[0]] + shape) if shape else xt.long()
        with torch.no_grad():
            y_t = model(xt).reshape(xt.shape[0], -1).double().numpy()
        if y_t.shape != y_c.shape:
            failures.append(f"SNIPPET {name}: output shape {y_t.shape} vs C {y_c.shape}")
            continue
        worst = float(np.max(np.abs(y_t - y_c)))
        print(f"SNIPPET {name}: max |torch - C| = {worst:.3g} over {y_c.size} outputs "
              f"(tolerance {TOL})")
        if not worst <= TOL:
            failures.append(f"SNIPPET {name}: outputs differ by {worst:.3g} (tolerance {TOL})")
    return failures


def cmd_check(args):
    snippet_dir = None
    if args.writer:
        workdir = args.workdir or os.getcwd()
        os.makedirs(workdir, exist_ok=True)
        subprocess.run([args.writer, "--write-interop", workdir], check=True)
        pairs = [(os.path.join(workdir, f"{m}.safetensors"), os.path.join(workdir, f"{m}_io.txt"))
                 for m in ("c_model", "c_cnn", "c_lm", "c_gru")]
        snippet_dir = workdir
    else:
        if not args.model or not args.io:
            print("check: give MODEL IO or --writer BINARY", file=sys.stderr)
            return 2
        pairs = [(args.model, args.io)]
    failures = []
    for model_path, io_path in pairs:
        failures += check_model(model_path, io_path)
    if snippet_dir:
        failures += check_snippet(snippet_dir)
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print("torch_interop: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture", help="write the PyTorch -> C fixture")
    f.add_argument("--out-dir", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    c = sub.add_parser("check", help="load a C-saved model into PyTorch and compare")
    c.add_argument("model", nargs="?")
    c.add_argument("io", nargs="?")
    c.add_argument("--writer", help="test_safetensors binary to produce the model")
    c.add_argument("--workdir", help="where --writer puts its files (default: cwd)")
    args = ap.parse_args()
    try:
        return cmd_fixture(args) if args.cmd == "fixture" else cmd_check(args)
    except (ValueError, KeyError, RuntimeError, OSError,
            subprocess.CalledProcessError) as e:
        print(f"torch_interop: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
