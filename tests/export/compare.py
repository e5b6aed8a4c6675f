#!/usr/bin/env python3
"""compare.py - an exported network's outputs against `backprop predict`.

    compare.py proba DRIVER_OUT PREDICT_CSV [--labels IDX] [--tol T]
    compare.py regress DRIVER_OUT PREDICT_CSV [--tol T]
    compare.py accuracy DRIVER_OUT LABELS_IDX
    compare.py raw DRIVER_OUT REF_OUT [--tol T]   (both "%.9g" rows: export_ref)

proba: the driver printed logits (or probabilities when --softmax-out):
softmax them in double as predict --proba does and print the largest
absolute difference of the probabilities over every row; fails above --tol.
regress, raw: predict's (export_ref's) values against the driver's, relative to max(1, |v|).
accuracy: the argmax of each driver row against IDX labels (or a text file
of one label index a line); prints the accuracy.
"""
import gzip
import math
import sys


def rows(path):
    with open(path) as f:
        return [[float(v) for v in line.split(",")] for line in f if line.strip()]


def predict_csv(path):
    with open(path) as f:
        lines = f.read().splitlines()
    return [[float(v) for v in line.split(",")[1:]] if "," in line else [float(line)]
            for line in lines[1:]]


def labels(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:4] == b"\x00\x00\x08\x01":
        return list(data[8:])
    return [int(v) for v in data.decode().split()]


def softmax(v):
    m = max(v)
    e = [math.exp(x - m) for x in v]
    s = sum(e)
    return [x / s for x in e]


def main():
    mode, a = sys.argv[1], sys.argv[2:]
    tol = 1e-5
    if "--tol" in a:
        i = a.index("--tol")
        tol = float(a[i + 1])
        del a[i:i + 2]
    probs = "--probs" in a  # the driver already printed probabilities
    if probs:
        a.remove("--probs")
    if mode == "accuracy":
        out, lab = rows(a[0]), labels(a[1])
        assert len(out) == len(lab), (len(out), len(lab))
        ok = sum(1 for o, l in zip(out, lab) if max(range(len(o)), key=o.__getitem__) == l)
        print("%.4f" % (ok / len(lab)))
        return 0
    out = rows(a[0])
    ref = rows(a[1]) if mode == "raw" else predict_csv(a[1])
    assert len(out) == len(ref), (len(out), len(ref))
    worst = 0.0
    for o, r in zip(out, ref):
        if mode == "proba":
            p = o if probs else softmax(o)
            if len(r) == 2 and len(p) == 1:  # bce: predict prints 1-p, p
                z = o[0]
                p1 = z if probs else 1 / (1 + math.exp(-z))
                p = [1 - p1, p1]
            d = max(abs(x - y) for x, y in zip(p, r))
        else:
            d = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(o, r))
        if not d <= worst:
            worst = d if d == d else float("inf")
    print("rows %d max_diff %.3g" % (len(out), worst))
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
