"""What the verifier logs: decisions inside the acceptance transaction, denials, changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from attest.audit import AuditLog
from attest.audit.hooks import (
    append_decision,
    enrollment_entry,
    record_decision,
    revocation_entry,
)
from attest.decision import Decision, Denial
from attest.errors import AuditUnavailable
from attest.reasons import Reason
from attest.store import RevocationKind, Store
from attest.store.db import Transaction
from tests.store import reads
from tests.store.helpers import T0, clock, record

FACTS = {"action": "exec", "argv": ["/usr/bin/deploy", "--token=s3cr3t"]}


def _entries(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in log.entries()]


def test_an_acceptance_is_logged_in_its_own_transaction(log: AuditLog, store: Store) -> None:
    accepted = Decision(True, jti="j1", subject="deploy-bot", host="host-1", facts=FACTS)
    indexes: list[int] = []
    store.accept(record("j1"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 in_transaction=lambda tx: indexes.append(
                     append_decision(log, tx, accepted, verifier_id="verifier-a")))
    assert indexes == [0]
    (logged,) = _entries(log)
    assert logged == {
        "v": 1, "index": 0, "kind": "decision", "time": logged["time"],
        "verifier": "verifier-a", "decision": "accepted", "reasons": [],
        "artifact": record("j1").sha256, "jti": "j1", "host": "host-1",
        "subject": "deploy-bot"}


def test_the_verifiers_decision_names_the_artifact_itself(log: AuditLog, store: Store) -> None:
    digest = "ab" * 32  # not what the store holds under j1: the decision's own is logged
    accepted = Decision(True, jti="j1", subject="deploy-bot", host="host-1",
                        artifact_sha256=digest)
    def log_it(tx: Transaction) -> None:
        append_decision(log, tx, accepted)

    store.accept(record("j1"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 in_transaction=log_it)
    (logged,) = _entries(log)
    assert logged["artifact"] == digest
    assert "artifact_sha256" not in accepted.to_json()


def test_an_acceptance_that_cannot_be_logged_is_not_committed(store: Store) -> None:
    unkeyed = AuditLog.open(store, None)
    accepted = Decision(True, jti="j1", subject="deploy-bot", host="host-1")

    def log_it(tx: Transaction) -> None:
        append_decision(unkeyed, tx, accepted)

    with pytest.raises(AuditUnavailable) as caught:
        store.accept(record("j1"), nonce=None, single_use=True, clock=clock(1), now=T0,
                     in_transaction=log_it)
    assert caught.value.reason is Reason.AUDIT_UNAVAILABLE
    assert not reads.jti_seen(store, "j1")
    assert unkeyed.size() == 0


def test_a_denial_is_logged_with_its_reason_codes_only(log: AuditLog) -> None:
    denied = Decision(False, (Denial(Reason.EXPIRED, "expired at 5; token s3cr3t"),
                              Denial(Reason.REPLAYED, "seen")), jti="j2", subject="bot",
                      host="host-1", facts=FACTS)
    assert record_decision(log, denied, verifier_id="verifier-a", artifact="ab" * 32) == 0
    (stored,) = log.entries()
    assert b"s3cr3t" not in stored.data and b"argv" not in stored.data
    assert json.loads(stored.data)["reasons"] == ["expired", "replayed"]
    assert json.loads(stored.data)["decision"] == "denied"


def test_enrollments_and_revocations_are_logged(log: AuditLog) -> None:
    log.record(enrollment_entry("host-1", bytes.fromhex("000b" + "a1" * 32), time=T0))
    log.record(revocation_entry(RevocationKind.ARTIFACT, "j1", "key leaked", time=T0 + 1))
    log.record(revocation_entry(RevocationKind.HOST, "host-1", "decommissioned", time=T0 + 2))
    enrolled, revoked, host = _entries(log)
    assert (enrolled["kind"], enrolled["decision"], enrolled["host"]) == (
        "enrollment", "enrolled", "host-1")
    assert enrolled["subject"] == "ak:000b" + "a1" * 32
    assert (revoked["kind"], revoked["jti"], revoked["subject"], revoked["reasons"]) == (
        "revocation", "j1", "jti:j1", ["key leaked"])
    assert (host["host"], host["subject"]) == ("host-1", "host:host-1")
