#!/usr/bin/env python3
"""What a signed head adds to one audit commit: the service signs one with every group
commit (HeadPolicy(every=1)) and records it in the key folder's ``last-head``.

Run standalone: ``PYTHONPATH=TREE .venv/bin/python scripts/bench_head.py [--commits N]``
(TREE: the attest tree to measure, so two trees can be compared with this one script).
On SQLite (WAL, synchronous=FULL) in a temporary folder with the log key beside it: one
:meth:`AuditLog.record` at a time (a lone commit, no group to share it), in blocks of
50 alternating between a log that signs and records a head with every commit and one
that signs none; wall time per commit. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from attest.audit import AuditLog, Entry, EntryKind, HeadPolicy, Outcome
from attest.store import Store

BLOCK = 50


def _entry(n: int) -> Entry:
    return Entry(EntryKind.DECISION, Outcome.DENIED, time=1_764_000_000 + n, verifier="bench",
                 reasons=("expired",), artifact=f"{n:064x}", jti=f"j-{n}", host="h",
                 subject="s")


def _measure(commits: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"head every commit": [], "no head": []}
    with tempfile.TemporaryDirectory(prefix="bench-head.") as folder:
        logs = {}
        for name in times:
            home = Path(folder) / name.replace(" ", "-")
            home.mkdir()
            os.environ["ATTEST_AUDIT_DIR"] = str(home / "audit")
            store = Store.open(f"sqlite:///{home}/verifier.db")
            policy = HeadPolicy(every=1 if name.startswith("head") else 10**9, interval=1e9)
            logs[name] = (store, AuditLog.open(store, home, heads=policy))
        n = 0
        try:
            while len(times["no head"]) < commits:
                for name, (_, log) in logs.items():
                    for _ in range(BLOCK):
                        n += 1
                        start = time.perf_counter()
                        log.record(_entry(n))
                        times[name].append(time.perf_counter() - start)
        finally:
            for store, _ in logs.values():
                store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=500, help="per kind (default 500)")
    args = parser.parse_args()
    times = _measure(max(args.commits, BLOCK))
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    for name, t in times.items():
        t.sort()
        print(f"{name:18} commits {len(t):5}  median {median[name]:6.2f} ms  "
              f"p90 {t[int(len(t) * 0.9)] * 1e3:6.2f} ms  mean {statistics.mean(t) * 1e3:6.2f} ms")
    print(f"a head adds {median['head every commit'] - median['no head']:.2f} ms "
          "to a lone commit (medians)")


if __name__ == "__main__":
    main()
