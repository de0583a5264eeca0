#!/usr/bin/env python3
"""Correctness before measuring: every corpus page through each server, compared with the file.

- smproxy inject: exactly one snippet, and the output minus the snippet is byte-identical to
  the file (otherwise the benchmark would be measuring a broken proxy): any failure exits 1.
- passthrough servers (nginx proxy, smproxy with inject disabled): byte-identical.
- nginx sub_filter: counted, not failed: pages where it injected nothing (no literal
  `</head>`), and pages where its output differs from smproxy's (snippet in another place,
  e.g. a `</head>` inside a script or comment, or a `</HEAD>` rewritten in lower case).

Prints `CHECK key: value` lines for load.sh.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http1  # noqa: E402


def fetch_all(addr, pages):
    c = http1.Conn(addr)
    out = {}
    for path, _ in pages:
        status, _, body = c.get(path)
        if status != 200:
            sys.exit(f"check.py: {addr}{path}: status {status}")
        out[path] = body
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", required=True, help="file of `url-path<TAB>file` lines")
    ap.add_argument("--snippet", required=True)
    ap.add_argument("--inject", required=True)
    ap.add_argument("--subfilter", required=True)
    ap.add_argument("--passthrough", action="append", default=[], metavar="NAME=ADDR")
    a = ap.parse_args()

    pages = []
    with open(a.pages) as f:
        for line in f:
            path, file = line.rstrip("\n").split("\t")
            with open(file, "rb") as fh:
                pages.append((path, fh.read()))
    with open(a.snippet, "rb") as f:
        snippet = f.read()

    bad = []
    anchors = {"head": 0, "body": 0, "end": 0, "other": 0}
    injected = fetch_all(a.inject, pages)
    for path, src in pages:
        out = injected[path]
        n = out.count(snippet)
        at = out.find(snippet)
        if n != 1 or out[:at] + out[at + len(snippet):] != src:
            bad.append(f"{path}: {n} snippet(s), identical otherwise: "
                       f"{n == 1 and out[:at] + out[at + len(snippet):] == src}")
            continue
        after = out[at + len(snippet):at + len(snippet) + 7].lower()
        key = {b"</head>": "head", b"</body>": "body"}.get(after, "end" if not after else "other")
        anchors[key] += 1
    print(f"CHECK pages: {len(pages)}")
    print(f"CHECK smproxy inject ok: {len(pages) - len(bad)}/{len(pages)} "
          f"(before </head>: {anchors['head']}, before </body>: {anchors['body']}, "
          f"at end: {anchors['end']}, elsewhere: {anchors['other']})")
    for b in bad:
        print(f"CHECK smproxy inject FAILED {b}")

    for spec in a.passthrough:
        name, addr = spec.split("=", 1)
        got = fetch_all(addr, pages)
        diff = [p for p, src in pages if got[p] != src]
        print(f"CHECK {name} byte-identical: {len(pages) - len(diff)}/{len(pages)}")
        bad += [f"{name} changed {p}" for p in diff]

    sub = fetch_all(a.subfilter, pages)
    none = sum(1 for p, _ in pages if snippet not in sub[p])
    differs = sum(1 for p, _ in pages if snippet in sub[p] and sub[p] != injected[p])
    print(f"CHECK nginx sub_filter wrong: {none + differs}/{len(pages)} pages "
          f"(no snippet: {none}; snippet, but output differs from smproxy's: {differs})")

    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
