#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle.

Reads every `src/**/*.rs` of the crate given (default: this repository's), maps each file to
its module path (`src/control/task.rs` -> `control::task`, `mod.rs` -> its folder), and draws
an arrow for every `crate::…` or `super::…` path in code outside `#[cfg(test)]` modules,
to the longest module that path names. `mod x;` declarations are not arrows; `pub use`
re-exports are. Cycles are checked twice: between files, and between the top-level modules
(`ingest`, `control`, `store`, …, a folder and everything in it counting as one).

Prints the arrows of each level and every cycle found; exits 1 on a cycle.
Usage: scripts/check-cycles.py [CRATE_DIR]
       scripts/check-cycles.py --self-test   (it must fail on a small crate with a cycle)
"""
import os
import re
import subprocess
import sys
import tempfile


def self_test():
    """Runs this script on small crates: two with a cycle (through `use crate::{…}` and
    `super::`, and through a `pub use child::…` re-export), one without; exits 1 unless it
    fails the first two and passes the third."""
    files = {
        "src/lib.rs": "pub mod a;\npub mod b;\n",
        "src/a/mod.rs": "pub mod inner;\npub use inner::I;\npub struct A;\n",
        "src/a/inner.rs": "use crate::{b::B, model};\n// use crate::nothing;\npub struct I;\n",
        "src/b.rs": 'pub struct B;\nfn f() -> &\'static str { "crate::a" }\n',
        "src/model.rs": "pub struct M;\n",
    }
    cases = [
        ({"src/b.rs": files["src/b.rs"] + "use super::a::A;\n"}, 1),  # a::inner -> b -> a
        ({"src/a/inner.rs": files["src/a/inner.rs"] + "use super::A;\n"}, 1),  # a -> inner -> a
        ({}, 0),
    ]
    results = []
    for changes, _ in cases:
        with tempfile.TemporaryDirectory() as d:
            for path, text in {**files, **changes}.items():
                os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
                with open(os.path.join(d, path), "w") as f:
                    f.write(text)
            r = subprocess.run([sys.executable, __file__, d], capture_output=True, text=True)
            results.append(r.returncode)
    expected = [e for _, e in cases]
    if results != expected:
        print(f"check-cycles self-test FAILED: exit codes {results}, expected {expected}")
        sys.exit(1)
    print("check-cycles self-test: a cycle fails, no cycle passes")
    sys.exit(0)


if sys.argv[1:] == ["--self-test"]:
    self_test()
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
src = os.path.join(root, "src")

modules = {}  # module path (tuple) -> file
for dirpath, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
        if rel in (["lib"], ["main"]):
            continue  # the crate roots only declare modules (main.rs is a separate crate)
        if rel[-1] == "mod":
            rel = rel[:-1]
        modules[tuple(rel)] = os.path.join(dirpath, f)


def strip(text):
    """The code without comments, string and char literals (lifetimes stay)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            j = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if j < 0 else j + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:]):
            i += re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def code_of(path):
    text = strip(open(path, encoding="utf-8").read())
    # Test modules may reach anywhere; they are not part of the layout.
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))?\s+)?mod \w+", text, re.M)
    return text[: cut.start()] if cut else text


def resolve(parts):
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in modules:
            return tuple(parts[:n])
    return None


PATH = re.compile(r"\b(crate|super)((?:::(?:\w+|\{[^;]*?\}))+)")

# `use child::…` / `use self::child::…` in a module that declares `child` (relative paths).
RELATIVE = re.compile(r"\buse\s+(?:self::)?(\w+)::")

edges = set()
for mod, path in modules.items():
    is_dir_mod = path.endswith("mod.rs")
    code = code_of(path)
    for m in RELATIVE.finditer(code):
        if m.group(1) in ("crate", "super", "self"):
            continue
        child = (mod if is_dir_mod else mod) + (m.group(1),)
        if is_dir_mod and child in modules:
            edges.add((mod, child))
    for m in PATH.finditer(code):
        head, tail = m.group(1), m.group(2)
        # Expand `a::{b, c::d}` one level into its members.
        prefix, _, group = tail.partition("{")
        segs = [s for s in prefix.split("::") if s]
        members = [g.strip() for g in group.rstrip("}").split(",")] if group else [""]
        if head == "crate":
            base = []
        else:
            base = list(mod if is_dir_mod else mod[:-1])
            while segs and segs[0] == "super":  # super::super::
                base, segs = base[:-1], segs[1:]
            base = base[:-1] if is_dir_mod else base
        for member in members:
            names = [s for s in member.split("::") if s and s not in ("self", "*")]
            names = [re.sub(r"\s+as\s+\w+$", "", s).strip("{} ") for s in names]
            target = resolve(base + segs + names)
            if target and target != mod:
                edges.add((mod, target))


def cycles(nodes, arrows):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    succ = {n: sorted(b for a, b in arrows if a == n) for n in nodes}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return out


sys.setrecursionlimit(10_000)
name = lambda m: "::".join(m)
file_cycles = cycles(set(modules), edges)
tops = {m[:1] for m in modules}
top_edges = {(a[:1], b[:1]) for a, b in edges if a[:1] != b[:1]}
top_cycles = cycles(tops, top_edges)

print(f"{len(modules)} modules, {len(edges)} import arrows between files")
print("top-level arrows:")
for a in sorted(tops):
    targets = sorted(name(b) for x, b in top_edges if x == a)
    print(f"  {name(a):<10} -> {', '.join(targets) if targets else '(leaf)'}")
bad = False
for level, found in (("file", file_cycles), ("top-level module", top_cycles)):
    for c in found:
        bad = True
        members = set(c)
        arrows = sorted(f"{name(a)} -> {name(b)}" for a, b in (edges if level == "file" else top_edges)
                        if a in members and b in members)
        print(f"CYCLE between {level}s: {', '.join(name(m) for m in c)}")
        for a in arrows:
            print(f"    {a}")
if bad:
    sys.exit(1)
print("no import cycle")
