"""Replicas appending to one audit log on PostgreSQL (read committed): the state row's
reservation (``UPDATE audit_state SET size = size + n``) serializes appends, so indexes
have no gap and no fork, and tree heads are signed under the same lock, one replica at a
time, each over the log exactly as its transaction left it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from attest.audit import AuditLog, Entry, EntryKind, HeadPolicy, Outcome, keys, verify_log
from attest.store import Store

WRITERS = 4
EACH = 15


def append_at_once(url: str, home: str, writer: int, barrier: Any, results: Any) -> None:
    """Worker process (a replica): append EACH entries, signing a head after every one."""
    try:
        with Store.open(url) as store:
            log = AuditLog.open(store, Path(home), heads=HeadPolicy(every=1, interval=1e9))
            barrier.wait()
            indexes = [log.record(Entry(
                EntryKind.DECISION, Outcome.DENIED, time=1_764_000_000, verifier=f"r{writer}",
                reasons=("expired",), artifact=f"{writer:032x}{n:032x}", jti=f"r{writer}-{n}",
                host="host-1", subject="s")) for n in range(EACH)]
        results.put(("ok", indexes))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(("error", repr(exc)))


def test_replicas_appending_at_once_leave_one_log_and_its_heads_in_order(
        pg_url: str, tmp_path: Path) -> None:
    with Store.open(pg_url) as store:  # the key the replicas share, made before they start
        AuditLog.open(store, tmp_path)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS, timeout=60)
    results = ctx.Queue()
    procs = [ctx.Process(target=append_at_once, args=(pg_url, str(tmp_path), n, barrier,
                                                      results)) for n in range(WRITERS)]
    for proc in procs:
        proc.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
    assert [status for status, _ in outcomes] == ["ok"] * WRITERS, outcomes
    indexes = sorted(i for _, got in outcomes for i in got)
    assert indexes == list(range(WRITERS * EACH))  # no index missing, none twice
    # Interleaved: the writers really ran at once (no one took every index in a row).
    assert any(got != list(range(got[0], got[0] + EACH)) for _, got in outcomes)
    with Store.open(pg_url) as store:
        log = AuditLog.open(store, tmp_path)
        summary = verify_log(store, log.verifier_key)
        # Each append signed the head over the log as its transaction left it: one head
        # per size, each consistent with the one before (verify_log checked them).
        assert [head.size for head in log.all_heads()] == list(range(1, WRITERS * EACH + 1))
    assert summary.entries == WRITERS * EACH


def test_the_last_head_beside_a_shared_key_never_goes_back(pg_url: str,
                                                           tmp_path: Path) -> None:
    # Two replicas on one machine share the key folder; each records the heads it signs
    # once they commit, in whatever order their threads get there.
    heads = HeadPolicy(every=1, interval=1e9)
    with Store.open(pg_url) as one, Store.open(pg_url) as two:
        first, second = AuditLog.open(one, tmp_path, heads=heads), \
            AuditLog.open(two, tmp_path, heads=heads)
        for n in range(2):
            first.record(_entry(n))
        older = keys.last_head_note(tmp_path)
        for n in range(2, 4):
            second.record(_entry(n))
        newer = keys.last_head_note(tmp_path)
        assert older is not None and newer is not None
        keys.save_last_head(tmp_path, older, first.verifier_key)  # the late recorder
        assert keys.last_head_note(tmp_path) == newer
        key = first.verifier_key
        assert key is not None
        last = keys.last_head(tmp_path, key)
        assert last is not None and last.size == 4


def _entry(n: int) -> Entry:
    return Entry(EntryKind.DECISION, Outcome.DENIED, time=1_764_000_000, verifier="r",
                 reasons=("expired",), artifact=f"{n:064x}", jti=f"j-{n}", host="host-1",
                 subject="s")
