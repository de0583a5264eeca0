#!/usr/bin/env python3
"""Memory per keep-alive connection: open N connections to a server, send one complete request
on each (so every connection has gone through the whole request path, upstream included),
keep them all open and idle, and read the server process's VmRSS before and after.

Prints one line: HOLD conns=N alive=M idle_kb=... held_kb=... closed_kb=...
(closed_kb: RSS a moment after all connections were closed again; if it stays near held_kb,
the memory was kept by the allocator rather than by live connections.)
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http1  # noqa: E402


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--pid", required=True, type=int, help="the process whose RSS is read")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=1.0)
    a = ap.parse_args()

    idle = rss_kb(a.pid)
    conns = []
    for _ in range(a.conns):
        c = http1.Conn(a.addr)
        status, _, _ = c.get(a.path)
        if status != 200:
            sys.exit(f"hold.py: status {status} from {a.addr}{a.path}")
        conns.append(c)
    time.sleep(a.settle)  # let the server finish any per-connection work after the response
    held = rss_kb(a.pid)

    # A connection the server already closed reads as EOF; an open idle one would block.
    alive = 0
    for c in conns:
        c.sock.setblocking(False)
        try:
            alive += 0 if c.sock.recv(1) == b"" else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for c in conns:
        c.sock.close()
    time.sleep(a.settle)
    closed = rss_kb(a.pid)
    print(f"HOLD conns={a.conns} alive={alive} idle_kb={idle} held_kb={held} closed_kb={closed}")


if __name__ == "__main__":
    main()
