"""The common report, written with its acceptance (attest.store.hosttrust.record_unchanged):
on a real store (SQLite, or PostgreSQL with ATTEST_TEST_POSTGRES) with a real audit log,
only a host stored as trusted, with a quote newer than the last one, takes this path;
every other case is left to record_report, which logs the change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.audit import AuditLog
from attest.decision import Decision, Denial
from attest.reasons import Reason
from attest.store import Store, events, hosttrust

AGE = 10
HOST = "web-1"


@pytest.fixture
def log(store: Store, tmp_path: Path) -> AuditLog:
    return AuditLog.open(store, tmp_path)


def _unchanged(store: Store, *, now: int, clock: int, host: str = HOST
               ) -> hosttrust.TrustView | None:
    with store.write() as tx:
        return hosttrust.record_unchanged(tx, host, now=now, clock=clock)


def _trail(store: Store, log: AuditLog) -> tuple[int, int]:
    """(audit entries of kind host_state, events): what a change would add to."""
    entries = [json.loads(e.data) for e in log.entries()]
    with store.read() as tx:
        streamed = events.after(tx, 0)
    return sum(e["kind"] == "host_state" for e in entries), len(streamed)


def test_a_trusted_hosts_report_moves_only_its_time(store: Store, log: AuditLog) -> None:
    assert hosttrust.record_report(store, log, Decision(True, host=HOST), 100, "v1",
                                   clock=1_000)
    before = hosttrust.view(store, HOST, now=100, max_age=AGE)
    trail = _trail(store, log)
    seen = _unchanged(store, now=109, clock=3_000)
    assert seen is not None and seen.state == hosttrust.TRUSTED
    assert (seen.reported_at, seen.changed_at, seen.audit_index) == (
        109, before.changed_at, before.audit_index)
    # Stored, not only answered: fresh past the first report's age.
    assert hosttrust.view(store, HOST, now=109 + AGE, max_age=AGE).state == hosttrust.TRUSTED
    assert _trail(store, log) == trail  # no audit entry, no event: nothing changed


@pytest.mark.parametrize("setup", ["never", "untrusted", "stale", "older", "same"])
def test_anything_but_a_newer_report_of_a_trusted_host_is_left_to_record_report(
        store: Store, log: AuditLog, setup: str) -> None:
    """None, and nothing written: a new host, an untrusted or stored-stale one (its
    return to trusted is a change to log), a quote no newer than the last one (a report
    held back must not move the time, nor undo a later untrusted)."""
    if setup != "never":
        assert hosttrust.record_report(store, log, Decision(True, host=HOST), 100, None,
                                       clock=5_000)
    if setup == "untrusted":
        bad = Decision(False, (Denial(Reason.REFERENCE_VALUE_MISMATCH, "x"),), host=HOST)
        assert hosttrust.record_report(store, log, bad, 101, None, clock=6_000)
    if setup == "stale":
        assert hosttrust.sweep_stale(store, log, now=200, max_age=AGE,
                                     verifier_id=None) == [HOST]
    before = hosttrust.view(store, HOST, now=102, max_age=10**6)
    clock = {"older": 4_000, "same": 5_000}.get(setup, 9_000)
    assert _unchanged(store, now=300, clock=clock) is None
    assert hosttrust.view(store, HOST, now=102, max_age=10**6) == before
    if setup != "never":
        # record_report then decides as it always did: a change is logged, an old
        # quote moves nothing.
        moved = hosttrust.record_report(store, log, Decision(True, host=HOST), 300, None,
                                        clock=clock)
        assert moved is (setup in ("untrusted", "stale"))
