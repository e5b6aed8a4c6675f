"""onnx_compare.py - run an exported model in onnxruntime and compare it with
`backprop predict` (used by test_cli_export_onnx.sh; run with the python of
the onnxruntime virtual environment).

    onnx_compare.py idx  MODEL.onnx IMAGES.idx[.gz] PRED.csv   # predict --proba
    onnx_compare.py csv  MODEL.onnx DATA.csv SKIP PRED.csv     # --proba, or values
    onnx_compare.py text MODEL.onnx PRED.csv                   # predict --proba

idx: the ONNX input is the IDX bytes / 255 as float32 (the model's input
shape, e.g. [N,1,28,28]). csv: the features (every column but the last,
after SKIP lines and the header) as float32, reshaped to the input shape.
text: the int64 [windows, T] input is the `id` column of predict's rows
(window, step, id, next, p0..p{V-1}). Classification outputs become
probabilities as predict computes them: the outputs themselves when the
last layer is softmax, the sigmoid for bce (p0 = 1 - p1), else the softmax
of the outputs. Prints one line "max_abs_diff X max_rel_diff Y rows N" and
exits 0 when the difference is within 1e-5 (absolute for probabilities,
relative for regression values), 1 otherwise.
"""
import csv
import gzip
import sys

import numpy as np
import onnxruntime as ort

TOL = 1e-5


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s, s.get_modelmeta().custom_metadata_map


def run(s, x):
    inp = s.get_inputs()[0]
    out = []
    for k in range(0, len(x), 2000):
        out.append(s.run(["output"], {inp.name: x[k:k + 2000]})[0])
    return np.concatenate(out).astype(np.float64)


def reshape(s, x):
    dims = s.get_inputs()[0].shape[1:]
    return x.reshape([len(x)] + [int(d) for d in dims])


def proba(y, meta):
    last = meta["spec"].split()[-1]
    if meta.get("loss") == "bce":
        p1 = y[:, 0] if last == "sigmoid" else 1 / (1 + np.exp(-y[:, 0]))
        return np.stack([1 - p1, p1], axis=1)
    if last == "softmax":
        return y
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def read_pred(path, skip_cols):
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def report(got, want, relative):
    d = np.abs(got - want)
    rel = d / np.maximum(np.abs(want), 1e-30)
    print("max_abs_diff %.3g max_rel_diff %.3g rows %d" % (d.max(), rel.max(), len(want)))
    bad = rel.max() if relative else d.max()
    return 0 if bad <= TOL else 1


def read_idx(path):
    op = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    b = op(path, "rb").read()
    rank = b[3]
    dims = [int.from_bytes(b[4 + 4 * k:8 + 4 * k], "big") for k in range(rank)]
    data = np.frombuffer(b, np.uint8, offset=4 + 4 * rank)
    table = (np.arange(256) / 255.0).astype(np.float32)  # as the library scales
    return table[data].reshape(dims[0], -1)


def main(argv):
    mode = argv[1]
    if mode == "idx":
        s, meta = session(argv[2])
        x = reshape(s, read_idx(argv[3]))
        _, rows = read_pred(argv[4], 1)
        want = np.array([[float(v) for v in r[1:]] for r in rows])
        return report(proba(run(s, x), meta), want, False)
    if mode == "csv":
        s, meta = session(argv[2])
        raw = np.loadtxt(argv[3], delimiter=",", skiprows=int(argv[4]) + 1, ndmin=2)
        x = reshape(s, raw[:, :-1].astype(np.float32))
        head, rows = read_pred(argv[5], 1)
        y = run(s, x)
        if meta.get("task") == "regress":
            want = np.array([[float(v) for v in r] for r in rows])
            return report(y, want, True)
        want = np.array([[float(v) for v in r[1:]] for r in rows])
        return report(proba(y, meta), want, False)
    if mode == "text":
        s, meta = session(argv[2])
        head, rows = read_pred(argv[3], 4)
        assert head[:4] == ["window", "step", "id", "next"], head[:4]
        T = int(s.get_inputs()[0].shape[1])
        W = len(rows) // T
        assert W * T == len(rows) and W > 0, (len(rows), T)
        ids = np.array([int(r[2]) for r in rows], np.int64).reshape(W, T)
        steps = np.array([int(r[1]) for r in rows]).reshape(W, T)
        assert (steps == np.arange(steps.shape[1])).all() or (steps == np.arange(1, T + 1)).all()
        want = np.array([[float(v) for v in r[4:]] for r in rows])
        got = proba(run(s, ids), meta).reshape(W * T, -1)
        return report(got, want, False)
    print("unknown mode " + mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
