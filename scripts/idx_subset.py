#!/usr/bin/env python3
"""idx_subset.py - write a subset of an IDX image/label pair (e.g. Fashion-MNIST).

    python3 idx_subset.py IMAGES LABELS OUT_IMAGES OUT_LABELS
                          [--classes 0,1,2] [--skip N] [--limit N]

Reads IMAGES and LABELS (IDX, optionally .gz), keeps the rows whose label is
in --classes (default: every label), after skipping the first --skip of them
and up to --limit rows, and writes uncompressed IDX files. The kept labels are
renumbered 0..k-1 in the order --classes lists them (IDX labels are class
indices, and a model's classes are 0..k-1): with --classes 5,6,7 label 5
becomes 0, 6 becomes 1, 7 becomes 2. Uses only the standard library.
"""
import argparse
import gzip
import struct


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("labels")
    ap.add_argument("out_images")
    ap.add_argument("out_labels")
    ap.add_argument("--classes", default=None)
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    img, lab = read(a.images), read(a.labels)
    magic, n = struct.unpack(">II", img[:8])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * (dims - 1), img[8:4 + 4 * dims])
    head = 4 + 4 * dims
    size = 1
    for d in shape:
        size *= d
    lmagic, ln = struct.unpack(">II", lab[:8])
    if ln != n or magic >> 8 != 8 or lmagic != 0x801:
        raise SystemExit("idx_subset: %s and %s do not pair (%d vs %d rows)" % (a.images, a.labels, n, ln))
    classes = [int(c) for c in a.classes.split(",")] if a.classes else None
    remap = {c: i for i, c in enumerate(classes)} if classes else None
    rows, labels, seen = [], [], 0
    for r in range(n):
        y = lab[8 + r]
        if remap is not None and y not in remap:
            continue
        seen += 1
        if seen <= a.skip:
            continue
        if a.limit is not None and len(rows) >= a.limit:
            break
        rows.append(img[head + r * size: head + (r + 1) * size])
        labels.append(remap[y] if remap is not None else y)
    with open(a.out_images, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(">I", len(rows)))
        f.write(struct.pack(">" + "I" * len(shape), *shape))
        f.write(b"".join(rows))
    with open(a.out_labels, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


if __name__ == "__main__":
    main()
