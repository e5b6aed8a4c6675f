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
      outputs on fixed inputs to torch_model_io.txt. tests/test_safetensors.c
      loads it with bp_net_load_weights and compares. Run it only when the
      fixture must change (the files are committed); the output is
      deterministic for a given torch version.

  /usr/bin/python3 tools/torch_interop.py check MODEL IO
  /usr/bin/python3 tools/torch_interop.py check --writer TEST_BINARY [--workdir DIR]
      C -> PyTorch. Reads a model saved by bp_net_save (MODEL) and a text
      file of inputs and the C library's outputs (IO; first line "n in out",
      then one row of inputs followed by outputs per sample, '#' comments
      allowed). With --writer, runs `TEST_BINARY --write-interop DIR` (the
      test_safetensors binary) to produce DIR/c_model.safetensors and
      DIR/c_model_io.txt first. Rebuilds the nn.Sequential from the "spec"
      metadata, loads the tensors with load_state_dict(strict=True), runs it
      in eval() mode and compares to 1e-5. Exits non-zero on any mismatch.
      ctest runs this (test "torch_interop") when torch is installed.
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
    """Return (tensors dict name -> torch.Tensor, metadata dict), checking the
    layout backprop promises: header padded to 8 bytes, F32 tensors whose
    offsets are contiguous in header order."""
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
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = info["shape"]
        count = int(np.prod(shape)) if shape else 1
        if end - begin != 4 * count or end > len(data):
            raise ValueError(f"{path}: tensor {name}: bad offsets {begin}, {end}")
        if begin != expect:
            raise ValueError(f"{path}: tensor {name}: offsets not contiguous")
        expect = end
        arr = np.frombuffer(data, dtype="<f4", count=count, offset=begin).reshape(shape)
        tensors[name] = torch.from_numpy(arr.astype(np.float32).copy())
    return tensors, meta, n


def write_safetensors(path, tensors, metadata=None):
    """Write a dict name -> tensor as F32 safetensors, data in dict order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        arr = t.detach().cpu().contiguous().numpy().astype("<f4")
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
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

WORD = re.compile(r"^([a-z_]+)(?:\(\s*([^)]*?)\s*\))?$")


def build_sequential(spec, inputs):
    layers = []
    width = inputs
    for word in spec.split():
        m = WORD.match(word)
        if not m:
            raise ValueError(f"spec word {word!r} does not parse")
        kind, arg = m.group(1), m.group(2)
        if kind == "dense":
            units = int(arg)
            layers.append(nn.Linear(width, units))
            width = units
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "leaky_relu":
            layers.append(nn.LeakyReLU(float(arg) if arg else 0.01))
        elif kind == "sigmoid":
            layers.append(nn.Sigmoid())
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "softmax":
            layers.append(nn.Softmax(dim=1))
        elif kind == "dropout":
            layers.append(nn.Dropout(float(arg) if arg else 0.5))
        elif kind == "identity":
            layers.append(nn.Identity())
        else:
            raise ValueError(f"spec word {word!r}: no PyTorch mapping")
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------

def cmd_fixture(args):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(8, 4) * 1.5
    model.eval()
    with torch.no_grad():
        y = model(x)
    os.makedirs(args.out_dir, exist_ok=True)
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
    return 0


def cmd_check(args):
    if args.writer:
        workdir = args.workdir or os.getcwd()
        os.makedirs(workdir, exist_ok=True)
        subprocess.run([args.writer, "--write-interop", workdir], check=True)
        model_path = os.path.join(workdir, "c_model.safetensors")
        io_path = os.path.join(workdir, "c_model_io.txt")
    else:
        if not args.model or not args.io:
            print("check: give MODEL IO or --writer BINARY", file=sys.stderr)
            return 2
        model_path, io_path = args.model, args.io

    tensors, meta, hlen = read_safetensors(model_path)
    failures = []
    if hlen % 8:
        failures.append(f"header length {hlen} is not a multiple of 8")
    if meta.get("format") != "backprop/1":
        failures.append(f"format metadata {meta.get('format')!r}")
    spec, inputs = meta.get("spec"), meta.get("inputs")
    if spec is None or inputs is None:
        print(f"{model_path}: no spec/inputs metadata", file=sys.stderr)
        return 1
    model = build_sequential(spec, int(inputs))
    # Strict: every key present with the right shape, nothing extra.
    model.load_state_dict(tensors, strict=True)
    model.eval()
    x, y_c = read_io(io_path)
    with torch.no_grad():
        y_t = model(torch.tensor(x, dtype=torch.float32)).double().numpy()
    if y_t.shape != y_c.shape:
        failures.append(f"output shape {y_t.shape} vs C {y_c.shape}")
    else:
        worst = float(np.max(np.abs(y_t - y_c)))
        if not worst <= TOL:
            failures.append(f"outputs differ by {worst:.3g} (tolerance {TOL})")
        print(f"spec: {spec}\nkeys: {', '.join(tensors)}\n"
              f"max |torch - C| = {worst:.3g} over {y_c.size} outputs")
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
