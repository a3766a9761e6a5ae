"""Each host's trust state from its reports (attest.store.hosttrust) on a real store
(SQLite, or PostgreSQL with ATTEST_TEST_POSTGRES) with a real audit log: which report
decisions move it, what each change logs, and when a host turns stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.audit import AuditLog
from attest.decision import Decision, Denial
from attest.reasons import Reason
from attest.store import Store, hosttrust

AGE = 10
GOOD = Decision(True, host="web-1")


def denied(host: str | None, *reasons: Reason) -> Decision:
    return Decision(False, tuple(Denial(r, r.value) for r in reasons), host=host)


@pytest.fixture
def log(store: Store, tmp_path: Path) -> AuditLog:
    return AuditLog.open(store, tmp_path)


def state_entries(log: AuditLog) -> list[dict[str, object]]:
    data = [json.loads(e.data) for e in log.entries()]
    return [d for d in data if d["kind"] == "host_state"]


@pytest.mark.parametrize("decision", [
    denied("web-1", Reason.INVALID_SIGNATURE),
    denied("web-1", Reason.QUOTE_SIGNATURE_INVALID, Reason.REFERENCE_VALUE_MISMATCH),
    denied("web-1", Reason.NONCE_REUSED, Reason.EVENTLOG_MISMATCH),
    denied("web-1", Reason.REPLAYED, Reason.REFERENCE_VALUE_MISMATCH),
    denied("web-1", Reason.BINDING_MISMATCH),
    denied(None, Reason.REFERENCE_VALUE_MISMATCH),
    Decision(True, host=None),
])
def test_what_is_not_an_authenticated_report_moves_nothing(
        store: Store, log: AuditLog, decision: Decision) -> None:
    """A measurement reason beside any authenticity one (someone's forged or replayed
    report naming the host) must not make the host untrusted."""
    assert hosttrust.record_report(store, log, GOOD, 100, None, clock=100)
    assert hosttrust.moves(decision) is None
    assert hosttrust.record_report(store, log, decision, 101, None, clock=101) is False
    assert hosttrust.view(store, "web-1", now=101, max_age=AGE).state == hosttrust.TRUSTED
    assert len(state_entries(log)) == 1


def test_reports_move_the_state_and_each_change_is_logged(store: Store, log: AuditLog) -> None:
    assert hosttrust.view(store, "web-1", now=100, max_age=AGE).state == hosttrust.STALE
    assert hosttrust.record_report(store, log, GOOD, 100, "v1", clock=100)
    assert not hosttrust.record_report(store, log, GOOD, 105, "v1", clock=105)
    bad = denied("web-1", Reason.REFERENCE_VALUE_MISMATCH)
    assert hosttrust.record_report(store, log, bad, 106, "v1", clock=106)
    assert not hosttrust.record_report(store, log, bad, 107, "v1", clock=107)
    worse = denied("web-1", Reason.REFERENCE_VALUE_MISMATCH, Reason.EVENTLOG_MISMATCH)
    assert hosttrust.record_report(store, log, worse, 108, "v1", clock=108)  # new reasons: logged
    seen = hosttrust.view(store, "web-1", now=10_000, max_age=AGE)
    # Untrusted stays untrusted, not stale, however long ago: only a report clears it.
    assert seen.state == hosttrust.UNTRUSTED
    assert seen.reasons == ("eventlog_mismatch", "reference_value_mismatch")
    assert seen.reported_at == 105 and seen.changed_at == 108
    denial = seen.denial()
    assert denial is not None and denial.reason == Reason.HOST_UNTRUSTED
    entries = state_entries(log)
    assert [(e["decision"], e["host"], e["verifier"]) for e in entries] == [
        ("trusted", "web-1", "v1"), ("untrusted", "web-1", "v1"),
        ("untrusted", "web-1", "v1")]
    assert entries[2]["reasons"] == ["eventlog_mismatch", "reference_value_mismatch"]
    assert seen.audit_index == entries[2]["index"]
    assert hosttrust.record_report(store, log, GOOD, 200, "v1", clock=200)
    assert hosttrust.view(store, "web-1", now=200, max_age=AGE).denial() is None


def test_a_host_turns_stale_past_the_age(store: Store, log: AuditLog) -> None:
    hosttrust.record_report(store, log, GOOD, 100, None, clock=100)
    assert hosttrust.view(store, "web-1", now=100 + AGE, max_age=AGE).state == "trusted"
    late = hosttrust.view(store, "web-1", now=101 + AGE, max_age=AGE)
    assert late.state == hosttrust.STALE
    denial = late.denial()
    assert denial is not None and denial.reason == Reason.HOST_STALE
    never = hosttrust.view(store, "web-2", now=100, max_age=AGE).denial()
    assert never is not None and never.reason == Reason.HOST_STALE


def test_a_report_quoted_before_the_last_change_moves_nothing(
        store: Store, log: AuditLog) -> None:
    """A good report made before the bad measurement, held back and sent after the
    report that made the host untrusted, must not make it trusted again."""
    good = Decision(True, host="web-1")
    bad = denied("web-1", Reason.REFERENCE_VALUE_MISMATCH)
    assert hosttrust.record_report(store, log, good, 100, None, clock=5_000)
    assert hosttrust.record_report(store, log, bad, 101, None, clock=7_000)
    assert not hosttrust.record_report(store, log, good, 102, None, clock=6_000)
    assert not hosttrust.record_report(store, log, good, 102, None, clock=7_000)
    assert hosttrust.view(store, "web-1", now=102, max_age=AGE).state == "untrusted"
    assert hosttrust.record_report(store, log, good, 103, None, clock=7_001)
    assert hosttrust.view(store, "web-1", now=103, max_age=AGE).state == "trusted"


def test_the_sweep_stores_and_logs_a_stale_host_once(store: Store, log: AuditLog) -> None:
    bad = denied("web-2", Reason.REFERENCE_VALUE_MISMATCH)
    assert hosttrust.record_report(store, log, GOOD, 100, None, clock=1)
    assert hosttrust.record_report(store, log, Decision(True, host="web-2"), 100, None,
                                   clock=1)
    assert hosttrust.record_report(store, log, bad, 100, None, clock=2)
    assert hosttrust.sweep_stale(store, log, now=100 + AGE, max_age=AGE,
                                 verifier_id=None) == []
    assert hosttrust.sweep_stale(store, log, now=101 + AGE, max_age=AGE,
                                 verifier_id="v1") == ["web-1"]  # web-2 stays untrusted
    assert hosttrust.sweep_stale(store, log, now=200, max_age=AGE, verifier_id="v1") == []
    assert hosttrust.view(store, "web-1", now=0, max_age=AGE).state == "stale"  # stored
    assert hosttrust.view(store, "web-2", now=200, max_age=AGE).state == "untrusted"
    entries = [(e["decision"], e["host"]) for e in state_entries(log)]
    assert entries[-1] == ("stale", "web-1") and entries.count(("stale", "web-1")) == 1
    assert hosttrust.record_report(store, log, GOOD, 300, None, clock=3)
    assert hosttrust.view(store, "web-1", now=300, max_age=AGE).state == "trusted"
    assert [(e["decision"], e["host"]) for e in state_entries(log)][-1] == (
        "trusted", "web-1")
