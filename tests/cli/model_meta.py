#!/usr/bin/env python3
"""model_meta.py - rewrite the __metadata__ of a safetensors model, for tests.

    python3 model_meta.py IN OUT [--set KEY VALUE]... [--del KEY]...
                                 [--junk-keys N] [--header-length N]

--set KEY VALUE   set a metadata string (JSON escaping is done here)
--del KEY         remove a metadata key
--junk-keys N     add N distinct keys "junk_0" .. (a large header)
--header-length N write N as the 8-byte header length instead of the real one
                  (only the length field changes)

The tensor entries and the data section are copied unchanged, so the file
differs from IN only in what was asked. Uses nothing but the standard
library (no backprop code), so a test can tamper a model the tool wrote.
"""
import json
import struct
import sys


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    src, dst = argv[1], argv[2]
    ops = argv[3:]
    with open(src, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = blob[8 + hlen:]
    meta = header.get("__metadata__", {})
    forced_len = None
    i = 0
    while i < len(ops):
        op = ops[i]
        if op == "--set":
            meta[ops[i + 1]] = ops[i + 2]
            i += 3
        elif op == "--del":
            meta.pop(ops[i + 1], None)
            i += 2
        elif op == "--junk-keys":
            for k in range(int(ops[i + 1])):
                meta["junk_%d" % k] = "v"
            i += 2
        elif op == "--header-length":
            forced_len = int(ops[i + 1])
            i += 2
        else:
            sys.stderr.write("model_meta.py: unknown option %s\n" % op)
            return 2
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    n = len(text) if forced_len is None else forced_len
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", n) + text + data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
