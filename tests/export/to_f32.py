#!/usr/bin/env python3
"""to_f32.py - samples as raw little-endian float32, the values the library reads.

    to_f32.py idx IMAGES OUT.f32      IDX images (.gz or not): byte / 255.0, as src/idx.c
    to_f32.py csv FILE OUT.f32 [--drop-last]
                                      CSV with a header: every column (the last one
                                      dropped with --drop-last, the target)
"""
import gzip
import struct
import sys
from array import array


def main():
    mode, src, dst = sys.argv[1:4]
    out = array("f")
    if mode == "idx":
        opener = gzip.open if src.endswith(".gz") else open
        with opener(src, "rb") as f:
            data = f.read()
        ndim = data[3]
        off = 4 + 4 * ndim
        table = [float(i / 255.0) for i in range(256)]
        out.extend(table[b] for b in data[off:])
    else:
        drop = "--drop-last" in sys.argv
        with open(src) as f:
            next(f)
            for line in f:
                v = line.strip().split(",")
                if not line.strip():
                    continue
                if drop:
                    v = v[:-1]
                out.extend(float(x) for x in v)
    if sys.byteorder != "little":
        out.byteswap()
    with open(dst, "wb") as f:
        out.tofile(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
