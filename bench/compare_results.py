#!/usr/bin/env python3
"""Compares two bftkit results.json files, ignoring what legitimately differs between runs of the
same code on the same input: versions, timings, the command line and the temporary folder a
fixtures run writes its data to. Prints every other difference (path: a != b) and exits 1 when there is one.

    bench/compare_results.py before/results.json after/results.json

Used to show that a refactor changed no number (floats are compared exactly).
"""
import json
import sys

IGNORED = {"bftkit_version", "runtime_s", "command", "seconds"}


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in IGNORED:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'after' if k not in a else 'before'}")
                continue
            walk(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items != {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif a != b and not (a != a and b != b):  # NaN == NaN here
        out.append(f"{path}: {a!r} != {b!r}")


def strip_tmp(d):
    """The run with its temporary fixture folder written as <fixtures> in every string."""
    roots = {r["probe"]["data_dir"].rsplit("/", 1)[0] for r in d.get("runs", [d])}
    text = json.dumps(d)
    for root in roots:
        text = text.replace(root, "<fixtures>")
    return json.loads(text)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = (json.load(open(p)) for p in sys.argv[1:])
    fixtures = any(r.get("fixtures") for r in a.get("runs", [a]))
    if fixtures:  # a fresh temporary folder per run: compare paths below it
        a, b = (strip_tmp(d) for d in (a, b))
    out = []
    walk(a, b, "$", out)
    for line in out[:200]:
        print(line)
    if out:
        print(f"{len(out)} differences")
        sys.exit(1)
    print("identical (ignoring versions, timings, command line"
          + (", fixture data folder)" if fixtures else ")"))


if __name__ == "__main__":
    main()
