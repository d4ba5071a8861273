#!/usr/bin/env python3
"""Keep every Nth record of a NIST CAVP SHA *.rsp file (byte-exact otherwise).

Usage: subset-cavp.py IN.rsp OUT.rsp [N=4]

Records are the blocks starting at a 'Len = ' line. The header (comment lines
and the '[L = ..]' line) is kept unchanged, followed by one extra comment line
stating the subset. Records with index 0, N, 2N, ... (0-based, in file order)
are kept verbatim, CRLF line endings included.
"""
import os
import sys

src, dst = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 4
data = open(src, 'rb').read()
lines = data.split(b'\r\n')
first = next(i for i, l in enumerate(lines) if l.startswith(b'Len = '))
header, body = lines[:first], lines[first:]
records, cur = [], []
for l in body:
    if l.startswith(b'Len = ') and cur:
        records.append(cur)
        cur = []
    cur.append(l)
records.append(cur)
kept = records[::n]
note = ('#  SUBSET: every %dth record (0-based index %% %d == 0) of %s: %d of %d records'
        % (n, n, os.path.basename(src), len(kept), len(records))).encode()
# insert the note after the leading comment block (before the blank line / [L = ..])
ins = next(i for i, l in enumerate(header) if not l.startswith(b'#'))
header = header[:ins] + [note] + header[ins:]
out = b'\r\n'.join(header + [l for r in kept for l in r])
if not out.endswith(b'\r\n'):
    out += b'\r\n'
open(dst, 'wb').write(out)
print(dst, len(kept), 'of', len(records), len(out), 'bytes')
