#!/usr/bin/env python3
"""Checks, after the beacon workload, that smproxy stored every beacon it accepted exactly once.

wrk counts the answers it read (all 2xx, or load.sh has already failed); requests cut off when
wrk stops may have been accepted without wrk counting them, so the store must hold between
`--answered` and `--answered + --in-flight` events. Also: nothing dropped or abandoned by the
writer, the writer's `written` equals the rows in the file, every row is the page view wrk
sent, and every beacon (a first visit, no cookie) got a visitor and a session of its own.

Prints one line `BEACONS stored=N answered=N` or the reason it failed (exit status 1).
"""
import argparse
import sqlite3
import sys
import time
import urllib.request


def metrics(addr, token):
    req = urllib.request.Request(f"http://{addr}/metrics",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("smproxy_events_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--answered", type=int, required=True)
    ap.add_argument("--in-flight", type=int, required=True)
    a = ap.parse_args()

    # The writer drains the queue after the load stops; wait until it has caught up.
    deadline = time.time() + 60
    while True:
        m = metrics(a.admin, a.token)
        enq = m.get("smproxy_events_enqueued_total", -1)
        written = m.get("smproxy_events_written_total", -2)
        if enq == written or time.time() > deadline:
            break
        time.sleep(0.2)

    def fail(why):
        print(f"BEACONS FAILED: {why}")
        sys.exit(1)

    if enq != written:
        fail(f"the writer did not catch up: enqueued {enq:.0f}, written {written:.0f}")
    for lost in ("smproxy_events_dropped_total", "smproxy_events_abandoned_total"):
        if m.get(lost, 0) != 0:
            fail(f"{lost} = {m[lost]:.0f}")

    db = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
    stored, visitors, sessions, odd = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT visitor_id), COUNT(DISTINCT session_id),"
        " SUM(kind != 'pageview' OR title IS NOT 'A page' OR screen IS NOT '1920x1080'"
        "     OR language IS NOT 'en-GB' OR path IS NOT '/p/page.html' OR is_bot != 0"
        "     OR browser IS NOT 'Chrome' OR visitor_id IS NULL OR session_id IS NULL)"
        " FROM events").fetchone()
    if stored != written:
        fail(f"{stored} rows in the file, the writer counted {written:.0f}")
    if not a.answered <= stored <= a.answered + a.in_flight:
        fail(f"{stored} events stored for {a.answered} answered beacons "
             f"(+ at most {a.in_flight} cut off)")
    if odd:
        fail(f"{odd} rows differ from the beacon that was sent")
    if visitors != stored or sessions != stored:
        fail(f"{stored} first visits but {visitors} visitors and {sessions} sessions")
    print(f"BEACONS stored={stored} answered={a.answered}")


if __name__ == "__main__":
    main()
