#!/usr/bin/env python3
"""Fails when the files of a crate import each other in a cycle.

A file A depends on file B when A names an item of B by path: `use crate::x::y::Item`,
`super::y::Item`, `self::y::Item` or an inline `crate::x::y::f()`. A path resolves to the deepest
module file it names (`crate::chat::rooms::ChatMessage` -> chat/rooms.rs, `crate::chat::Chat` ->
chat/mod.rs), so a re-export through a parent's `mod.rs` is a dependency on that `mod.rs` and
through it on the child it re-exports. Two kinds of edge do not count, as ARCHITECTURE.md says:
a file naming one of its ancestor modules (a child using its parent's re-exports) and a file
naming itself. Comments and string literals are ignored.

Usage: scripts/check-cycles.py [CRATE_DIR...]   (default: every workspace member with a src/)
       scripts/check-cycles.py --self-test       (checks that a planted cycle is caught)
Exit status 1 and one block per cycle (the files, and the line of each edge) when any exists.
"""

import os
import re
import sys
import tempfile

DEFAULT_CRATES = ["core", "ingest", "packager", "edge", "social", "benches"]


def strip(src):
    """Source with comments, string and char literals blanked (newlines kept for line numbers)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r(#*)"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", src[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def modules(crate):
    """{module path tuple: file} for the crate's library (or binary) tree."""
    src = os.path.join(crate, "src")
    root = "lib.rs" if os.path.exists(os.path.join(src, "lib.rs")) else "main.rs"
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if rel == root:
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            elif len(parts) == 1 and parts[0] in ("lib", "main"):
                continue  # the other root (a binary beside the library) is its own crate
            mods[tuple(parts)] = os.path.join(src, rel)
    return mods


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (aliases and globs dropped)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def go(s):
        if "{" in s:
            i = s.index("{")
            prefix = [p for p in s[:i].split("::") if p]
            inner = s[i + 1:s.rindex("}")]
            return [prefix + p for part in split_top(inner) for p in go(part)]
        return [[p for p in s.split("::") if p and p != "*"]]

    return go(tree)


def resolve(here, path, mods):
    """The module path a `path` written in module `here` names, or None when external."""
    if not path:
        return None
    head = path[0]
    if head == "crate":
        base, rest = (), path[1:]
    elif head in ("self", "super"):
        base, rest = here, path
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    elif here + (head,) in mods:
        base, rest = here, path  # a child module named without `self::`
    else:
        return None
    best = tuple(base)
    for seg in rest:
        cand = best + (seg,)
        if cand in mods:
            best = cand
        else:
            break
    return best


def edges(crate):
    mods = modules(crate)
    by_file = {f: m for m, f in mods.items()}
    out = {}
    for here, f in mods.items():
        with open(f, encoding="utf-8") as fh:
            src = strip(fh.read())
        found = {}
        # `use` trees (possibly over several lines).
        for m in re.finditer(r"\buse\s+([^;]+);", src):
            line = src.count("\n", 0, m.start()) + 1
            for p in expand_use(m.group(1)):
                t = resolve(here, p, mods)
                if t is not None:
                    found.setdefault(t, line)
        # Inline paths: crate::a::b, super::a, self::a.
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", src):
            line = src.count("\n", 0, m.start()) + 1
            t = resolve(here, m.group(1).split("::"), mods)
            if t is not None:
                found.setdefault(t, line)
        for t, line in found.items():
            if t == here or here[:len(t)] == t:
                continue  # itself, or an ancestor: a child may use its parent's re-exports
            out.setdefault(f, {})[mods[t]] = line
    return out, by_file


def cycles(graph):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]
    nodes = set(graph) | {t for ts in graph.values() for t in ts}

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
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
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return comps


def check(crates):
    bad = 0
    for crate in crates:
        graph, _ = edges(crate)
        for comp in cycles(graph):
            bad += 1
            print(f"import cycle in {crate}:")
            members = set(comp)
            for f in comp:
                for t, line in sorted(graph.get(f, {}).items()):
                    if t in members:
                        print(f"  {f}:{line} -> {t}")
    if bad:
        print(f"{bad} import cycle(s). Two files that need each other are missing a third "
              "module (the shared types, or the service both call); name items by the file "
              "that defines them, not through a parent that re-exports a sibling.")
    return bad


def self_test():
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "src", "a"))
        files = {
            "lib.rs": "mod a;\nmod b;\nuse crate::a::A;\n",
            "a/mod.rs": "pub mod x;\npub use x::X;\n/// crate::b::B in a comment is no edge\npub struct A;\n",
            "a/x.rs": "use super::A; // a child naming its parent: no edge\npub struct X;\n",
            "b.rs": 'use crate::a::x::X;\nconst S: &str = "crate::a::A";\npub struct B;\n',
        }
        for name, text in files.items():
            with open(os.path.join(d, "src", name), "w") as fh:
                fh.write(text)
        assert check([d]) == 0, "false cycle reported"
        with open(os.path.join(d, "src", "a", "x.rs"), "a") as fh:
            fh.write("fn f() { let _ = crate::b::B; }\n")
        assert check([d]) == 1, "planted cycle a/x.rs <-> b.rs not found"
    print("check-cycles self-test: ok (a planted cycle is reported, comments and strings are not)")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    crates = argv[1:] or [c for c in DEFAULT_CRATES if os.path.isdir(os.path.join(c, "src"))]
    bad = check(crates)
    if not bad:
        print(f"no import cycles in {', '.join(crates)}")
    return 1 if bad else 0


if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")) if len(sys.argv) == 1 else None
    sys.exit(main(sys.argv))
