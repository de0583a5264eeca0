#!/usr/bin/env python3
"""Medians of the load benchmark's raw results, as a Markdown table plus the ratios.

Input: runs.tsv (one line per wrk run) and mem.tsv (one line per 1,000-connection hold),
both with a header line, written by load.sh.
"""
import csv
import statistics
import sys

SERVERS = [
    ("direct", "(1) nginx origin, direct"),
    ("nginx-proxy", "(2) nginx proxy_pass"),
    ("nginx-subfilter", "(3) nginx proxy_pass + sub_filter"),
    ("smproxy-pass", "(4) smproxy, inject disabled"),
    ("smproxy-inject", "(5) smproxy, injecting"),
    # SMPROXY_BIN_BASE: another smproxy binary in the same run, for an A/B of a change.
    # Injecting, or not with BASE_INJECT=false.
    ("smproxy-base", "(6) smproxy-base (SMPROXY_BIN_BASE)"),
]
WORKLOADS = [
    ("median", "median page"),
    ("rotation", "rotation, all pages"),
    ("c1000", "median page, 1,000 conns"),
]
# Beacons: smproxy's collect endpoint (validation, cookie, event queued for SQLite) beside nginx
# answering `return 204` with a `Set-Cookie` (in the sub_filter server's config).
BEACON = ("beacon", "beacons (nginx: return 204 + Set-Cookie)")
# The cheapest answer of each server (smproxy: 304 for the tracker; nginx: the same 204).
FLOOR = ("floor", "floor (smproxy: 304; nginx: return 204)")


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    runs, mem = read(sys.argv[1]), read(sys.argv[2])

    def runs_of(server, workload):
        return [r for r in runs if r["server"] == server and r["workload"] == workload]

    def m(server, workload, key):
        return med([float(r[key]) for r in runs_of(server, workload)])

    out = []
    w = out.append
    n_rep = len({r["repeat"] for r in runs})
    w(f"Medians of {n_rep} run(s) each. Server under test on CPU 1; wrk and the origin nginx on CPU 0.")
    w("")
    w("| server | workload | req/s | p50 ms | p99 ms | CPU µs/req | CPU busy % | peak RSS MB | KB/resp | errors |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s, sname in SERVERS:
        for wl, wname in WORKLOADS + [BEACON, FLOOR]:
            rs = runs_of(s, wl)
            if not rs:
                continue
            errs = sum(int(r["errors"]) for r in rs)
            # Share of its one CPU the server used: near 100 means it was the bottleneck;
            # well below, the load generator's CPU (wrk + origin) limited the run.
            busy = med([float(r["rps"]) * float(r["cpu_us_per_req"]) / 1e4 for r in rs])
            w(f"| {sname} | {wname} | {m(s, wl, 'rps'):,.0f} | {m(s, wl, 'p50_us') / 1000:.2f} "
              f"| {m(s, wl, 'p99_us') / 1000:.2f} | {m(s, wl, 'cpu_us_per_req'):.1f} | {busy:.0f} "
              f"| {m(s, wl, 'peak_rss_kb') / 1024:.1f} | {m(s, wl, 'bytes_per_req') / 1024:.1f} | {errs} |")
    w("")
    w("Errors: wrk socket errors + non-2xx/3xx responses, summed over the runs; they fail the "
      "script except in the 1,000-connection run. Peak RSS: VmHWM of the server's working "
      "process (nginx worker, smproxy) during the run. CPU busy: the server's CPU time ÷ "
      "wall time; well below 100 means CPU 0 (wrk + origin), not the server, set the pace. "
      "Beacons through smproxy: CPU time from every accepted event stored to every accepted "
      "event stored again, so it includes storing every answered beacon (CPU busy can then "
      "exceed 100).")
    w("")

    def mem_med(server, key):
        return med([float(r[key]) for r in mem if r["server"] == server])

    per_k = {}
    if mem:
        w("Memory of 1,000 idle keep-alive connections (one complete request each, then held open):")
        w("")
        w("| server | idle RSS MB | RSS with 1,000 conns MB | MB per 1,000 conns | RSS after closing them MB | conns still open |")
        w("|---|---:|---:|---:|---:|---:|")
    for s, sname in SERVERS:
        rows = [r for r in mem if r["server"] == s]
        if not rows:
            continue
        deltas = [(int(r["held_kb"]) - int(r["idle_kb"])) / 1024 * 1000 / int(r["conns"]) for r in rows]
        per_k[s] = med(deltas)
        alive = min(int(r["alive"]) for r in rows)
        w(f"| {sname} | {mem_med(s, 'idle_kb') / 1024:.1f} | {mem_med(s, 'held_kb') / 1024:.1f} "
          f"| {per_k[s]:.1f} | {mem_med(s, 'closed_kb') / 1024:.1f} | {alive}/{rows[0]['conns']} (fewest) |")
    if mem:
        w("")

    def ratio(a, b):
        return a / b if b else float("nan")

    # Only the page workloads that were run get a column.
    page_wls = [(wl, name) for wl, name in WORKLOADS if any(r["workload"] == wl for r in runs)]
    page_runs = bool(page_wls)
    if page_runs:
        w("Ratios (medians):")
        w("")
        w("| ratio | " + " | ".join(name for _, name in page_wls) + " |")
        w("|---|" + "---:|" * len(page_wls))
    for label, a, b, key in [] if not page_runs else [
        ("req/s: smproxy inject ÷ nginx sub_filter", "smproxy-inject", "nginx-subfilter", "rps"),
        ("CPU µs/req: smproxy inject ÷ nginx sub_filter", "smproxy-inject", "nginx-subfilter", "cpu_us_per_req"),
        ("req/s: smproxy inject ÷ smproxy passthrough", "smproxy-inject", "smproxy-pass", "rps"),
        ("req/s: smproxy passthrough ÷ nginx proxy_pass", "smproxy-pass", "nginx-proxy", "rps"),
        ("p99: smproxy inject ÷ nginx sub_filter", "smproxy-inject", "nginx-subfilter", "p99_us"),
    ] + ([] if not any(runs_of("smproxy-base", wl) for wl, _ in page_wls) else [
        # A/B of two builds: against the passthrough or the injecting row (BASE_INJECT).
        ("CPU µs/req: smproxy-base ÷ smproxy passthrough", "smproxy-base", "smproxy-pass", "cpu_us_per_req"),
        ("CPU µs/req: smproxy-base ÷ smproxy inject", "smproxy-base", "smproxy-inject", "cpu_us_per_req"),
    ]):
        cells = [f"{ratio(m(a, wl, key), m(b, wl, key)):.2f}×" for wl, _ in page_wls]
        w(f"| {label} | " + " | ".join(cells) + " |")
    if runs_of("smproxy-inject", "beacon") and runs_of("nginx-subfilter", "beacon"):
        w("")
        rps = ratio(m("smproxy-inject", "beacon", "rps"), m("nginx-subfilter", "beacon", "rps"))
        cpu = ratio(m("smproxy-inject", "beacon", "cpu_us_per_req"),
                    m("nginx-subfilter", "beacon", "cpu_us_per_req"))
        w(f"Beacons: smproxy collect ÷ nginx `return 204`: req/s {rps:.2f}×, CPU µs/req {cpu:.2f}×.")
        if runs_of("smproxy-base", "beacon"):
            rps = ratio(m("smproxy-base", "beacon", "rps"), m("nginx-subfilter", "beacon", "rps"))
            cpu = ratio(m("smproxy-base", "beacon", "cpu_us_per_req"),
                        m("nginx-subfilter", "beacon", "cpu_us_per_req"))
            w(f"Beacons, smproxy-base: req/s {rps:.2f}×, CPU µs/req {cpu:.2f}× of nginx.")
    if runs_of("smproxy-inject", "floor") and runs_of("nginx-subfilter", "floor"):
        w("")
        rps = ratio(m("smproxy-inject", "floor", "rps"), m("nginx-subfilter", "floor", "rps"))
        cpu = ratio(m("smproxy-inject", "floor", "cpu_us_per_req"),
                    m("nginx-subfilter", "floor", "cpu_us_per_req"))
        w(f"Floor: smproxy's cheapest answer ÷ nginx `return 204`: req/s {rps:.2f}×, "
          f"CPU µs/req {cpu:.2f}× (no endpoint of either server can do better).")
        if runs_of("smproxy-base", "floor"):
            rps = ratio(m("smproxy-base", "floor", "rps"), m("nginx-subfilter", "floor", "rps"))
            cpu = ratio(m("smproxy-base", "floor", "cpu_us_per_req"),
                        m("nginx-subfilter", "floor", "cpu_us_per_req"))
            w(f"Floor, smproxy-base: req/s {rps:.2f}×, CPU µs/req {cpu:.2f}× of nginx.")
    if "smproxy-inject" in per_k and "nginx-proxy" in per_k:
        w("")
        w(f"RSS per 1,000 keep-alive conns: smproxy inject {per_k['smproxy-inject']:.1f} MB, "
          f"smproxy passthrough {per_k.get('smproxy-pass', float('nan')):.1f} MB, "
          f"nginx proxy_pass {per_k['nginx-proxy']:.1f} MB, "
          f"nginx sub_filter {per_k.get('nginx-subfilter', float('nan')):.1f} MB "
          f"(smproxy inject ÷ nginx proxy_pass: {ratio(per_k['smproxy-inject'], per_k['nginx-proxy']):.1f}×).")
    print("\n".join(out))


if __name__ == "__main__":
    main()
