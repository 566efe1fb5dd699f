#!/usr/bin/env python3
"""Sizes of the code: lines of non-test code per file and the longest functions.

Counts every `.rs` file under the folders given (default: src and simulator/src), without
its `#[cfg(test)]` module, blank lines and comments; a function's length is from its `fn`
line to its closing brace. Prints the files over LIMIT lines (default 400), the functions
over 80 lines, and totals.
Usage: scripts/sizes.py [--limit N] [DIR …]
"""
import os
import re
import sys

args = sys.argv[1:]
limit = 400
if args[:1] == ["--limit"]:
    limit, args = int(args[1]), args[2:]
here = os.path.join(os.path.dirname(__file__), "..")
dirs = args or [os.path.join(here, "src"), os.path.join(here, "simulator", "src")]

files, funcs = [], []
for d in dirs:
    for dirpath, _, names in os.walk(d):
        for n in sorted(names):
            if not n.endswith(".rs"):
                continue
            path = os.path.join(dirpath, n)
            lines = open(path, encoding="utf-8").read().split("\n")
            end = len(lines)
            for i, l in enumerate(lines):
                if l.startswith("#[cfg(test)]") and i + 1 < len(lines) and re.match(r"\s*(pub(\(crate\))? )?mod \w+", lines[i + 1]):
                    end = i
                    break
            code = [l for l in lines[:end] if l.strip() and not l.strip().startswith("//")]
            rel = os.path.relpath(path, here)
            files.append((len(code), rel))
            # Functions: an `fn` line, then count to the brace that closes it.
            i = 0
            while i < end:
                m = re.match(r"\s*(pub(\([^)]*\))? )?(const )?(async )?fn (\w+)", lines[i])
                if m and "{" in "".join(lines[i:i + 12]):
                    depth, j, opened = 0, i, False
                    while j < end:
                        s = re.sub(r'"(\\.|[^"\\])*"|//.*', "", lines[j])
                        s = re.sub(r"'(\\.|[^\\'])'", "", s)
                        depth += s.count("{") - s.count("}")
                        opened = opened or "{" in s
                        if opened and depth <= 0:
                            break
                        if not opened and s.rstrip().endswith(";"):
                            break
                        j += 1
                    if opened:
                        funcs.append((j - i + 1, f"{rel}:{i + 1} {m.group(5)}"))
                i += 1

big = sorted((f for f in files if f[0] > limit), reverse=True)
print(f"{len(files)} files, {sum(f[0] for f in files)} lines of non-test code; over {limit}: {len(big)}")
for n, rel in big:
    print(f"  {n:5} {rel}")
long = sorted((f for f in funcs if f[0] > 80), reverse=True)
print(f"functions over 80 lines: {len(long)}")
for n, name in long:
    print(f"  {n:5} {name}")
