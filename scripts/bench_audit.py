#!/usr/bin/env python3
"""Audit log figures (issue 6): appends/s with durability, proof times at 10^6 entries,
and `attest audit verify` throughput. All on SQLite (WAL, synchronous=FULL) in a
temporary folder.

Run standalone (`.venv/bin/python scripts/bench_audit.py [--quick] [--json]`), or call
:func:`section_audit` from scripts/bench. Progress goes to stderr, rows to stdout.
Nothing asserts on timings.

- appends/s: one transaction per append from one thread (no batching), then
  :meth:`AuditLog.record` from 1, 4, 16 and 64 threads: group commit shares each
  fsync between the appends waiting for it. Every append returns only after its
  transaction committed.
- proofs: a 10^6-entry log is built by the log's own tree code (leaves and subtree
  hashes in one transaction, entries encoded as the log does), then inclusion and
  consistency proofs at random indexes/sizes, two ways: the stored-tree read alone
  (``tree.inclusion_proof`` in an open transaction) and the whole ``AuditLog`` call
  (its own transaction, entry, root and checkpoint lookups included).
- verify: ``attest audit verify`` as a subprocess on that log (start-up included),
  and :func:`verify_log` in process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest.audit import AuditLog, Entry, EntryKind, HeadPolicy, Outcome, keys, tree, verify_log
from attest.audit.schema import audit_heads
from attest.store import Store, default_url

APPEND_TARGET = 2000.0  # appends/s
PROOF_TARGET_MS = 5.0
BIG = 1_000_000
QUICK_BIG = 100_000
PROOF_RUNS = 500
HEADS_IN_BIG_LOG = 100


@dataclass(frozen=True)
class Row:
    name: str
    value: float
    unit: str
    target: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "target": self.target, "note": self.note}


def progress(message: str) -> None:
    print(f"[audit] {message}", file=sys.stderr, flush=True)


def _entry(n: int) -> Entry:
    return Entry(EntryKind.DECISION, Outcome.ACCEPTED, time=1_764_000_000 + n,
                 verifier="bench", artifact=f"{n:064x}", jti=f"jti-{n}", host="host-1",
                 subject="deploy-bot")


# -- appends ---------------------------------------------------------------------------


def _fresh_log(folder: Path, every: int = 1000) -> AuditLog:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return AuditLog.open(Store.open(default_url(folder)), folder,
                         heads=HeadPolicy(every=every, interval=60))


def _unbatched(log: AuditLog, count: int) -> float:
    start = time.perf_counter()
    for n in range(count):
        with log.store.write() as conn:
            log.append(conn, _entry(n))
    return count / (time.perf_counter() - start)


def _grouped(log: AuditLog, threads: int, per_thread: int) -> float:
    barrier = threading.Barrier(threads + 1)

    def worker(w: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            log.record(_entry(w * per_thread + n))

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    return threads * per_thread / (time.perf_counter() - start)


def append_rows(work: Path, quick: bool) -> list[Row]:
    rows: list[Row] = []
    count = 300 if quick else 1500
    progress(f"appends: {count} one-per-transaction appends...")
    log = _fresh_log(work / "unbatched")
    rate = _unbatched(log, count)
    rows.append(Row("append, one transaction each, 1 thread", rate, "appends/s",
                    f">= {APPEND_TARGET:,.0f}", "each append its own durable commit"))
    log.store.close()
    for threads in (1, 4, 16, 64):
        total = (2000 if quick else 8000)
        progress(f"appends: group commit, {threads} threads, {total} appends...")
        log = _fresh_log(work / f"grouped-{threads}")
        rate = _grouped(log, threads, max(total // threads, 1))
        rows.append(Row(f"append, group commit, {threads} thread{'s' * (threads > 1)}", rate,
                        "appends/s",
                        f">= {APPEND_TARGET:,.0f}",
                        "AuditLog.record: durable before it returns"))
        verify_log(log.store, log.verifier_key)
        log.store.close()
    batch = 64
    progress(f"appends: record_many, batches of {batch}, 1 thread...")
    log = _fresh_log(work / "many")
    start = time.perf_counter()
    for first in range(0, count * 4, batch):
        log.record_many([_entry(n) for n in range(first, first + batch)])
    rows.append(Row(f"append, record_many of {batch}, 1 thread",
                    count * 4 / (time.perf_counter() - start), "appends/s",
                    f">= {APPEND_TARGET:,.0f}", "one durable commit per batch"))
    log.store.close()
    return rows


# -- a big log -------------------------------------------------------------------------


def build_big_log(folder: Path, size: int) -> AuditLog:
    """``size`` entries through the log's own tree code, in one transaction."""
    log = _fresh_log(folder)
    signer = keys.load(folder)
    head_every = chunk = max(size // HEADS_IN_BIG_LOG, 1)
    sample = _entry(7)
    assert _canonical(sample, 7) == sample.encode(7)  # noqa: S101 - same bytes as the log's
    start = time.perf_counter()
    with log.store.write() as conn:
        heads: list[dict[str, Any]] = []
        for first in range(0, size, chunk):
            stop = min(first + chunk, size)
            root = tree.extend(conn, first, [_canonical(_entry(n), n) for n in range(first, stop)])
            if stop % head_every == 0 or stop == size:
                heads.append({"size": stop, "signed_at": 0, "note": signer.sign(stop, root)})
            if stop % (chunk * 10) == 0:
                progress(f"  built {stop:,} entries")
        conn.many(audit_heads.insert(), heads)
        conn.execute("UPDATE audit_state SET size = :size, head_size = :size, head_at = 0",
                     {"size": size})
    progress(f"built {size:,} entries in {time.perf_counter() - start:.1f} s")
    return log


def _canonical(entry: Entry, index: int) -> bytes:
    # RFC 8785 output equals sorted-key compact json.dumps for these ASCII-only
    # entries, and json.dumps is 3-4x faster: it only speeds up the build.
    return json.dumps(entry.to_json(index), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _timed_ms(call: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def proof_rows(log: AuditLog, size: int, runs: int) -> list[Row]:
    rng = random.Random(9)  # noqa: S311 - proof positions, not secrets
    rows: list[Row] = []
    with log.store.read() as conn:
        progress(f"proofs: {runs} inclusion and consistency proofs at {size:,} entries...")
        median, p95 = _timed_ms(lambda: tree.inclusion_proof(conn, rng.randrange(size), size),
                                runs)
        rows.append(Row(f"inclusion proof at {size:,}: stored-tree reads", median, "ms median",
                        f"<= {PROOF_TARGET_MS} ms", f"p95 {p95:.3f} ms; one open transaction"))
        median, p95 = _timed_ms(
            lambda: tree.consistency_proof(conn, rng.randrange(1, size), size), runs)
        rows.append(Row(f"consistency proof at {size:,}: stored-tree reads", median,
                        "ms median", f"<= {PROOF_TARGET_MS} ms", f"p95 {p95:.3f} ms"))
    median, p95 = _timed_ms(lambda: log.inclusion_proof(rng.randrange(size), size), runs)
    rows.append(Row(f"inclusion proof at {size:,}: AuditLog.inclusion_proof", median,
                    "ms median", f"<= {PROOF_TARGET_MS} ms",
                    f"p95 {p95:.3f} ms; own transaction, entry + root + checkpoint"))
    median, p95 = _timed_ms(lambda: log.consistency_proof(rng.randrange(1, size), size), runs)
    rows.append(Row(f"consistency proof at {size:,}: AuditLog.consistency_proof", median,
                    "ms median", f"<= {PROOF_TARGET_MS} ms",
                    f"p95 {p95:.3f} ms; both roots and checkpoints included"))
    return rows


def verify_rows(log: AuditLog, folder: Path, size: int) -> list[Row]:
    key = log.verifier_key
    assert key is not None  # noqa: S101 - opened with its home
    progress(f"verify: attest audit verify over {size:,} entries...")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "attest.cli.main", "audit", "verify", "--key", key.encode(),
         "--store", default_url(folder)],
        env={**os.environ, "ATTEST_HOME": str(folder)}, capture_output=True, text=True,
        check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"attest audit verify failed: {done.stdout}{done.stderr}")
    rows = [Row(f"attest audit verify, {size:,} entries", size / elapsed, "entries/s",
                note=f"{elapsed:.1f} s, subprocess, start-up included; {done.stdout.strip()}")]
    start = time.perf_counter()
    verify_log(log.store, key)
    elapsed = time.perf_counter() - start
    rows.append(Row(f"verify_log in process, {size:,} entries", size / elapsed, "entries/s",
                    note=f"{elapsed:.1f} s: leaves, every subtree hash, "
                    f"{HEADS_IN_BIG_LOG} heads"))
    return rows


def section_audit(quick: bool = False) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="attest-bench-audit-"))
    try:
        rows = append_rows(work, quick)
        size = QUICK_BIG if quick else BIG
        log = build_big_log(work / "big", size)
        rows += proof_rows(log, size, 100 if quick else PROOF_RUNS)
        rows += verify_rows(log, work / "big", size)
        log.store.close()
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^5 entries, fewer runs")
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    args = parser.parse_args()
    rows = section_audit(args.quick)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"{r.name:<{width}}  {r.value:>12,.3f} {r.unit:<12} {r.target:<12} {r.note}")


if __name__ == "__main__":
    main()
