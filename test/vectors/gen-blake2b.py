#!/usr/bin/env python3
"""Regenerate blake2b/blake2b-256-generated.json and blake2b/blake2b-512-generated.json.

Digests are computed with CPython's hashlib.blake2b (CPython's bundled BLAKE2
implementation; independent of both the Linux kernel and OpenSSL), unkeyed,
with digest_size=32 (the kernel's "blake2b-256") and digest_size=64 ("blake2b-512").

Messages are deterministic: msg(n) = bytes(i % 251 for i in range(n)) for
n = 0..300 and n in (1000, 4096, 65537).

Usage (from the repository root):  python3 test/vectors/gen-blake2b.py
The output is byte-for-byte reproducible.
"""
import hashlib
import json
import os
import platform

LENGTHS = list(range(0, 301)) + [1000, 4096, 65537]
HERE = os.path.dirname(os.path.abspath(__file__))


def msg(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


for bits in (256, 512):
    vectors = []
    for n in LENGTHS:
        m = msg(n)
        vectors.append({
            "len": n,
            "msg": m.hex(),
            "md": hashlib.blake2b(m, digest_size=bits // 8).hexdigest(),
        })
    doc = {
        "algorithm": "BLAKE2b-%d" % bits,
        "digestSizeBits": bits,
        "keyed": False,
        "generator": "test/vectors/gen-blake2b.py (CPython hashlib.blake2b, digest_size=%d)" % (bits // 8),
        "message": "bytes(i % 251 for i in range(len))",
        "numberOfTests": len(vectors),
        "vectors": vectors,
    }
    path = os.path.join(HERE, "blake2b", "blake2b-%d-generated.json" % bits)
    with open(path, "w", encoding="ascii", newline="\n") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(path, len(vectors), "vectors", os.path.getsize(path), "bytes",
          "(python %s)" % platform.python_version())
