"""Batch acceptance (attest.verify.batch): concurrent verifications share one write
transaction, each acceptance in a savepoint of its own; single use stays atomic and a
denial burns nothing. Real artifacts from a swtpm, real SQLite on disk (or, with
ATTEST_TEST_POSTGRES set, a new PostgreSQL database: tests/store/helpers.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from attest.artifact import jws
from attest.audit import revseals, verify_log
from attest.audit.hooks import revoke_logged
from attest.audit.log import AuditLog
from attest.decision import Decision
from attest.errors import AuditUnavailable, StoreUnavailable
from attest.store import Store, default_url
from attest.store.db import Transaction
from attest.store.records import RevocationKind
from attest.verify import verifier as verifier_module
from attest.verify.verifier import Verifier
from tests.store import reads
from tests.store.helpers import POSTGRES, store_url
from tests.verify.rig import Rig, accepted, denied

CALLERS = 8
WAIT_S = 30.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(rig: Rig, tmp_path: Path) -> Iterator[Store]:
    """The verifier's store: SQLite in the rig's folder, or PostgreSQL (store_url)."""
    if POSTGRES is None:
        yield rig.store()
        return
    with store_url(tmp_path / "pg") as url, Store.open(url) as opened:
        yield opened


def _entries(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(entry.data) for entry in log.entries()]


def _counting_writes(store: Store, monkeypatch: pytest.MonkeyPatch,
                     before: Callable[[int], None] | None = None,
                     ) -> list[int]:
    """Count the store's write transactions (``before(n)`` runs as the n-th opens)."""
    opened: list[int] = []
    real = store.write

    def write() -> AbstractContextManager[Transaction]:
        opened.append(len(opened))
        if before is not None:
            before(len(opened))
        return real()

    monkeypatch.setattr(store, "write", write)
    return opened


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _concurrently(verifier: Verifier, raws: list[bytes],
                  monkeypatch: pytest.MonkeyPatch) -> tuple[list[Decision], list[int]]:
    """``raws`` verified by one thread each: the first holds its commit until all the
    others queue behind it, so they must share one. The decisions, and the write
    transactions opened."""
    release = threading.Event()

    def hold_the_first(n: int) -> None:
        if n == 1:
            assert release.wait(WAIT_S), "the other callers never queued"

    writes = _counting_writes(verifier.store, monkeypatch, hold_the_first)
    decisions: list[Decision | None] = [None] * len(raws)

    def call(i: int) -> None:
        decisions[i] = verifier.verify(raws[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(raws))]
    threads[0].start()
    _wait_for(lambda: len(writes) == 1, "the first commit")
    for thread in threads[1:]:
        thread.start()
    _wait_for(lambda: verifier.waiting == len(raws) - 1, "the callers to queue")
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert all(d is not None for d in decisions)
    return [d for d in decisions if d is not None], writes


def test_concurrent_verifications_share_one_commit(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers that arrive while a commit is in flight are committed together, in ONE
    write transaction after it, each with its own entry: 8 verifications, 2 commits."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    raws = [rig.issue() for _ in range(CALLERS)]
    decisions, writes = _concurrently(verifier, raws, monkeypatch)
    for decision in decisions:
        accepted(decision)
    assert len(writes) == 2
    assert sorted(d.audit_index for d in decisions if d.audit_index is not None) == list(
        range(CALLERS))
    assert sorted(e["jti"] for e in _entries(log)) == sorted(
        jws.parse(raw).claims.jti for raw in raws)
    verify_log(store, log.verifier_key)


def test_concurrent_verifications_of_one_artifact_accept_it_once(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 callers with the same artifact, 7 of them in one group: exactly one acceptance,
    7 ``replayed``, every decision logged, the store and the log in agreement."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    raw = rig.issue()
    decisions, _ = _concurrently(verifier, [raw] * CALLERS, monkeypatch)
    assert [d.accepted for d in decisions].count(True) == 1
    for decision in decisions:
        if not decision.accepted:
            denied(decision, "replayed")
    assert sorted(e["decision"] for e in _entries(log)) == ["accepted"] + ["denied"] * 7
    verify_log(store, log.verifier_key)


def test_threads_presenting_artifacts_again_and_again_accept_each_once(
        rig: Rig, store: Store) -> None:
    """8 threads, each presenting the same 3 artifacts in its own order, with no help to
    group them: however the groups fall, each artifact is accepted exactly once, every
    decision is logged once, and the log verifies against the store."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    raws = [rig.issue() for _ in range(3)]
    decisions: list[tuple[int, Decision]] = []
    lock = threading.Lock()
    start = threading.Barrier(CALLERS)

    def call(worker: int) -> None:
        start.wait(WAIT_S)
        for k in range(len(raws)):
            which = (worker + k) % len(raws)
            decision = verifier.verify(raws[which])
            with lock:
                decisions.append((which, decision))

    threads = [threading.Thread(target=call, args=(w,)) for w in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert len(decisions) == CALLERS * len(raws)
    for which in range(len(raws)):
        mine = [d for w, d in decisions if w == which]
        assert [d.accepted for d in mine].count(True) == 1
        for decision in mine:
            if not decision.accepted:
                denied(decision, "replayed")
    indexes = sorted(d.audit_index for _, d in decisions if d.audit_index is not None)
    assert indexes == list(range(CALLERS * len(raws)))
    assert verify_log(store, log.verifier_key).entries == CALLERS * len(raws)


def test_one_nonce_in_a_group_is_consumed_once(rig: Rig, store: Store) -> None:
    """Two artifacts answering one challenge, committed in one group: the first is
    accepted, the second is ``nonce_reused``; the other members are untouched."""
    verifier = Verifier(rig.policy(), store, rig.log(store))
    nonce = store.issue_nonce(120, int(time.time()))
    raws = [rig.issue(), rig.issue(nonce=nonce), rig.issue(nonce=nonce), rig.issue()]
    decisions = verifier.verify_batch(raws)
    accepted(decisions[0])
    accepted(decisions[1])
    denied(decisions[2], "nonce_reused")
    accepted(decisions[3])


def test_a_batch_accepts_the_others_around_a_replay_and_logs_every_decision(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_batch reads in one read transaction and commits in one write transaction;
    a member replayed (before the batch, or earlier in it) is denied alone, the others
    are accepted, and every decision has its entry."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    first, second, third = rig.issue(), rig.issue(), rig.issue()
    accepted(verifier.verify(first))
    writes = _counting_writes(store, monkeypatch)
    decisions = verifier.verify_batch([second, first, b"not a jws", third, second])
    assert len(writes) == 1
    accepted(decisions[0])
    denied(decisions[1], "replayed")
    denied(decisions[2], "malformed_artifact")
    accepted(decisions[3])
    denied(decisions[4], "replayed")
    assert [d.audit_index for d in decisions] == [1, 2, 3, 4, 5]
    assert [(e["decision"], e["reasons"]) for e in _entries(log)] == [
        ("accepted", []), ("accepted", []), ("denied", ["replayed"]),
        ("denied", ["malformed_artifact"]), ("accepted", []), ("denied", ["replayed"])]
    for raw in (first, second, third):
        record = reads.artifact(store, jws.parse(raw).claims.jti)
        assert record is not None and log.sealed(record)
    verify_log(store, log.verifier_key)


def _counting_statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of every statement run in the store's write transactions, in order."""
    run: list[str] = []
    real = store.write

    @contextmanager
    def write() -> Iterator[Transaction]:
        with real() as tx:
            for name in ("execute", "first", "all", "scalar"):
                method = getattr(tx, name)

                def counted(sql: str, *args: Any, _method: Any = method) -> Any:
                    run.append(sql)
                    return _method(sql, *args)

                monkeypatch.setattr(tx, name, counted)
            yield tx

    monkeypatch.setattr(store, "write", write)
    return run


def test_a_group_checks_the_revocation_set_once_and_each_line_against_it(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The set's lock is taken and the set read against its seal ONCE per group, not
    again per acceptance (the group holds the lock to its commit); a revocation the
    verifier sealed before the group still denies the member it covers. Each acceptance
    runs in one savepoint, its seal in none of its own."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    # The AK's clock and epoch rows exist (a first acceptance inserts them, in savepoints).
    accepted(verifier.verify(rig.issue()))
    raws = [rig.issue() for _ in range(4)]
    revoke_logged(store, log, RevocationKind.ARTIFACT, jws.parse(raws[2]).claims.jti, "leaked")
    run = _counting_statements(store, monkeypatch)
    decisions = verifier.verify_batch(raws)
    for i in (0, 1, 3):
        accepted(decisions[i])
    denied(decisions[2], "revoked")
    assert run.count(revseals._LOCK) == 1
    assert run.count(revseals._AGGREGATE) == 1
    assert run.count(revseals._COUNT) == 1
    # One savepoint per acceptance (its own rollback), none nested for its seal.
    assert sum(sql.startswith("SAVEPOINT") for sql in run) == 3
    verify_log(store, log.verifier_key)


def test_a_member_the_log_refuses_is_denied_alone_and_burns_nothing(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The artifact seal of one member fails mid-batch: that member is denied
    (audit_unavailable) with its savepoint undone, its jti unused; the others commit. A
    retry of it later is accepted."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    raws = [rig.issue(), rig.issue(), rig.issue()]
    unlucky = jws.parse(raws[1]).claims.jti
    real = log.seal_artifact

    def seal(tx: Transaction, record: Any) -> None:
        if record.jti == unlucky:
            raise StoreUnavailable("the seal could not be written (simulated)")
        real(tx, record)

    monkeypatch.setattr(log, "seal_artifact", seal)
    decisions = verifier.verify_batch(raws)
    accepted(decisions[0])
    denied(decisions[1], "audit_unavailable")
    accepted(decisions[2])
    assert not reads.jti_seen(store, unlucky)
    assert [e["decision"] for e in _entries(log)] == ["accepted", "denied", "accepted"]
    monkeypatch.undo()
    accepted(verifier.verify(raws[1]))
    verify_log(store, log.verifier_key)


def test_a_failed_commit_denies_every_member_and_consumes_nothing(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group's transaction fails at its end (as a full disk fails a COMMIT): no
    member is accepted, no jti or nonce consumed, the denials are logged after, and each
    artifact is accepted when presented again."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    nonce = store.issue_nonce(120, int(time.time()))
    raws = [rig.issue(), rig.issue(nonce=nonce), rig.issue()]
    real = store.write
    failures = [StoreUnavailable("database or disk is full (simulated)")]

    @contextmanager
    def write() -> Iterator[Transaction]:
        with real() as tx:
            yield tx
            if failures:
                raise failures.pop()

    monkeypatch.setattr(store, "write", write)
    decisions = verifier.verify_batch(raws)
    for decision in decisions:
        denied(decision, "audit_unavailable")
    for raw in raws:
        assert not reads.jti_seen(store, jws.parse(raw).claims.jti)
    assert reads.nonce_state(store, nonce, int(time.time())).name == "USABLE"
    assert [(e["decision"], e["reasons"]) for e in _entries(log)] == [
        ("denied", ["audit_unavailable"])] * 3
    for decision in verifier.verify_batch(raws):
        accepted(decision)
    verify_log(store, log.verifier_key)


def test_a_group_whose_entries_cannot_be_appended_accepts_nothing(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group's entries are appended together after its acceptances; if that append
    fails, the whole transaction rolls back: no acceptance commits unlogged, and each
    artifact is accepted when presented again."""
    store_log = rig.log(store)
    verifier = Verifier(rig.policy(), store, store_log)
    raws = [rig.issue(), rig.issue()]
    real = store_log.append_many
    failures = [AuditUnavailable("the audit log could not take the entry (simulated)")]

    def append_many(tx: Transaction, entries: Any) -> list[int]:
        if failures:
            raise failures.pop()
        return real(tx, entries)

    monkeypatch.setattr(store_log, "append_many", append_many)
    for decision in verifier.verify_batch(raws):
        denied(decision, "audit_unavailable")
    assert not any(reads.jti_seen(store, jws.parse(raw).claims.jti) for raw in raws)
    for decision in verifier.verify_batch(raws):
        accepted(decision)
    assert [e["decision"] for e in _entries(store_log)] == ["denied"] * 2 + ["accepted"] * 2
    verify_log(store, store_log.verifier_key)


def test_a_member_whose_verification_raises_is_denied_alone(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while preparing one member's read (here: deriving its snapshot
    query) is that member's denial (internal_error), logged; the batch goes on."""
    log = rig.log(store)
    verifier = Verifier(rig.policy(), store, log)
    raws = [rig.issue(), rig.issue(), rig.issue()]
    unlucky = jws.parse(raws[1]).claims.jti
    real = verifier_module.snapshot_query

    def query(artifact: Any, *args: Any) -> Any:
        if artifact.claims.jti == unlucky:
            raise RuntimeError("a surprise")
        return real(artifact, *args)

    monkeypatch.setattr(verifier_module, "snapshot_query", query)
    decisions = verifier.verify_batch(raws)
    accepted(decisions[0])
    denied(decisions[1], "internal_error")
    accepted(decisions[2])
    assert [d.audit_index for d in decisions] == [0, 1, 2]


def test_an_unaudited_batch_commits_its_acceptances(rig: Rig, store: Store) -> None:
    """Verifier.unaudited batches too: one transaction, no entries, the same refusals."""
    verifier = rig.verifier(store=store)
    raw = rig.issue()
    decisions = verifier.verify_batch([raw, raw, b"x"])
    accepted(decisions[0])
    denied(decisions[1], "replayed")
    denied(decisions[2], "malformed_artifact")
    assert all(d.audit_index is None for d in decisions)
    assert verifier.verify_batch([]) == []


@pytest.mark.sqlite_only
def test_a_group_killed_before_its_commit_leaves_nothing_half_done(rig: Rig) -> None:
    """A verifier process killed (SIGKILL) after its group's acceptances and entries are
    written but before COMMIT: none of them stands, the log verifies and agrees with
    the store, and every artifact of the group is accepted when presented again."""
    store = rig.store()
    log = rig.log(store)
    policy = rig.policy()
    verifier = Verifier(policy, store, log)
    raws = [rig.issue() for _ in range(4)]
    accepted(verifier.verify(raws[0]))  # the log and its key exist before the kill
    files = []
    for i, raw in enumerate(raws):
        files.append(rig.tmp / f"artifact-{i}.jws")
        files[-1].write_bytes(raw)
    assert policy.path is not None
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.verify.batch_child", default_url(rig.tmp / "verifier"),
         str(rig.tmp / "verifier"), str(policy.path), *map(str, files)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    _, errors = child.communicate()
    assert line == b"appended\n", errors.decode()
    assert child.returncode == -signal.SIGKILL
    assert [reads.jti_seen(store, jws.parse(raw).claims.jti) for raw in raws] == [
        True, False, False, False]
    assert verify_log(store, log.verifier_key).entries == 1
    decisions = verifier.verify_batch(raws)
    denied(decisions[0], "replayed")
    for decision in decisions[1:]:
        accepted(decision)
    assert verify_log(store, log.verifier_key).entries == 5


@pytest.mark.skipif(POSTGRES is None, reason="two writers at once: a server store "
                    "(ATTEST_TEST_POSTGRES); SQLite has one writer at a time")
def test_two_replicas_groups_never_deadlock(rig: Rig, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two verifiers on one PostgreSQL database commit groups at once. A (two nonces)
    holds its first member's rows when B (the second nonce again) starts: B waits for A
    instead of taking the nonce's row first, so A's members are both accepted and B's is
    ``nonce_reused``, rather than a deadlock denying a whole group."""
    with store_url(tmp_path / "pg") as url, Store.open(url) as first, \
            Store.open(url) as second, Store.open(url) as watcher:
        now = int(time.time())
        one, two = first.issue_nonce(120, now), first.issue_nonce(120, now)
        group_a = [rig.issue(nonce=one), rig.issue(nonce=two)]
        group_b = [rig.issue(nonce=two)]
        log_a = AuditLog.open(first, rig.tmp)
        replica_a = Verifier(rig.policy(), first, log_a)
        replica_b = Verifier(replica_a.policy, second, AuditLog.open(second, rig.tmp),
                             trust=replica_a.trust)
        holding, release = threading.Event(), threading.Event()
        real = log_a.seal_artifact

        def seal(tx: Transaction, record: Any) -> None:
            real(tx, record)
            if not holding.is_set():  # A's first member: its rows are locked now
                holding.set()
                assert release.wait(WAIT_S)

        monkeypatch.setattr(log_a, "seal_artifact", seal)
        results: dict[str, list[Decision]] = {}
        a = threading.Thread(target=lambda: results.setdefault(
            "a", replica_a.verify_batch(group_a)))
        b = threading.Thread(target=lambda: results.setdefault(
            "b", replica_b.verify_batch(group_b)))
        a.start()
        assert holding.wait(WAIT_S)
        b.start()

        def b_waits() -> bool:
            with watcher.read() as tx:
                return bool(tx.scalar("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE wait_event_type = 'Lock'"))

        _wait_for(b_waits, "the second replica to wait for a lock")
        release.set()
        a.join(WAIT_S)
        b.join(WAIT_S)
        for decision in results["a"]:
            accepted(decision)
        denied(results["b"][0], "nonce_reused")
