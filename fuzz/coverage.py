#!/usr/bin/env python3
"""Line coverage of the ferroftp sources reached by the fuzz corpora (`fuzz/run.sh coverage`).

Usage: coverage.py [--uncovered PATH_SUFFIX] BINARY:LOG [BINARY:LOG ...]

Each LOG is the output of `BINARY -runs=0 -print_full_coverage=1 CORPUS...` from a build with
`--features coverage-report`, whose symbolizer hooks print PCs as offsets in the executable.
The offsets are mapped to source lines with addr2line; a line counts as covered if any
instrumented PC on it ran, in any of the targets.
"""
import collections
import os
import re
import subprocess
import sys

covered = collections.defaultdict(set)
instrumented = collections.defaultdict(set)

args = sys.argv[1:]
show = None
if args[:1] == ["--uncovered"]:
    show, args = args[1], args[2:]

for arg in args:
    binary, log = arg.split(":", 1)
    pcs = {}  # offset -> covered?
    in_cov = False
    for line in open(log, errors="replace"):
        if line.startswith("FULL COVERAGE:"):
            in_cov = True
            continue
        if in_cov and line[:1] in ("U", "C"):
            for tok in line[1:].split():
                if tok.startswith("0x"):
                    pcs[int(tok, 16)] = pcs.get(int(tok, 16), False) or line[0] == "C"
    if not pcs:
        sys.exit(f"coverage.py: no coverage data in {log} (built with --features coverage-report?)")
    offsets = sorted(pcs)
    # -a: each address, then its source location and the locations it was inlined into, so
    # that a line is credited for the code inlined at it.
    out = subprocess.run(
        ["addr2line", "-a", "-i", "-e", binary],
        input="".join(f"{o:#x}\n" for o in offsets),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    current = None
    for loc in out:
        if loc.startswith("0x"):
            current = int(loc, 16)
            continue
        m = re.match(r"(.*):(\d+)", loc)
        if not m or current is None:
            continue
        path, lineno = m.group(1), int(m.group(2))
        i = max(path.find("/crates/ferroftp/"), path.find("/crates/proto/"))
        if i < 0 or lineno == 0:
            continue
        key = path[i + 1 :]
        instrumented[key].add(lineno)
        if pcs[current]:
            covered[key].add(lineno)

rows = []
totals = collections.Counter()
for path in sorted(instrumented):
    n, c = len(instrumented[path]), len(covered[path] & instrumented[path])
    crate = path.split("/")[1]
    totals[(crate, "n")] += n
    totals[(crate, "c")] += c
    rows.append((path, c, n))
width = max(len(p) for p, _, _ in rows)
print(f"{'file':<{width}}  lines hit / with code")
for path, c, n in rows:
    print(f"{path:<{width}}  {c:5d} / {n:5d}  {100 * c / n:5.1f}%")
if show:
    for path in instrumented:
        if path.endswith(show):
            print(f"not reached in {path}:", *sorted(instrumented[path] - covered[path]))
for crate in sorted({p.split('/')[1] for p, _, _ in rows}):
    c, n = totals[(crate, "c")], totals[(crate, "n")]
    print(f"crate {crate}: {c} of {n} lines with code reached ({100 * c / n:.1f}%)")
