"""Receipts kept per group commit (AuditLog.keep_receipts, set by the service): the
receipts of a commit's entries are read once, after the commit, for all of them; each
verifies against the log key as one read on demand does; if reading them fails, the
commit stands and each receipt is read on demand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from attest.artifact import jws
from attest.audit import log as audit_log
from attest.audit.log import AuditLog, HeadPolicy
from attest.errors import StoreUnavailable
from attest.store import Store
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted

GROUP = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, rig: Rig) -> Iterator[Store]:
    if request.param == "sqlite":
        yield rig.store()
        return
    url = request.getfixturevalue("pg_url")
    with Store.open(url) as opened:
        yield opened


def _log(rig: Rig, store: Store, *, keep: bool) -> AuditLog:
    home = rig.tmp / "verifier-home"
    home.mkdir(exist_ok=True)
    log = AuditLog.open(store, home, heads=HeadPolicy(every=1))
    log.keep_receipts = keep
    return log


def _reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the store's read transactions from now on (one element each)."""
    opened: list[int] = []
    real = store.read

    @contextmanager
    def read() -> Iterator[Any]:
        opened.append(1)
        with real() as tx:
            yield tx

    monkeypatch.setattr(store, "read", read)
    return opened


def _check(log: AuditLog, raws: list[bytes], indexes: list[int]) -> None:
    key = log.verifier_key
    assert key is not None
    for raw, index in zip(raws, indexes, strict=True):
        receipt = log.receipt(index)
        head = receipt.verify(key)  # the proof, to a head the log key signed
        assert head.size == receipt.tree_size > index
        assert receipt.entry is not None
        assert jws.parse(raw).claims.jti in receipt.entry.decode()


def test_a_group_commits_receipts_are_read_once_and_each_verifies(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(rig, store, keep=True)
    verifier = Verifier(rig.policy(), store, log)
    accepted(verifier.verify(rig.issue()))
    raws = [rig.issue() for _ in range(GROUP)]
    decisions = verifier.verify_batch(raws)
    for decision in decisions:
        accepted(decision)
    indexes = [d.audit_index for d in decisions]
    assert None not in indexes
    reads = _reads(store, monkeypatch)
    _check(log, raws, indexes)  # type: ignore[arg-type]
    assert reads == []  # all kept by the commit: no transaction per receipt
    monkeypatch.undo()
    # Taken once: asked again, a receipt is read on demand, and still verifies.
    _check(log, raws[:1], indexes[:1])  # type: ignore[arg-type]


def test_receipts_not_kept_are_read_on_demand(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(rig, store, keep=False)
    verifier = Verifier(rig.policy(), store, log)
    raws = [rig.issue() for _ in range(GROUP)]
    decisions = verifier.verify_batch(raws)
    reads = _reads(store, monkeypatch)
    _check(log, raws, [d.audit_index for d in decisions])  # type: ignore[misc]
    assert len(reads) == GROUP


def test_when_keeping_receipts_fails_the_decisions_stand_and_receipts_come_on_demand(
        rig: Rig, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(rig, store, keep=True)

    def unreadable(*_: Any) -> Any:
        raise StoreUnavailable("the store went away after the commit (simulated)")

    monkeypatch.setattr(audit_log, "_inclusions", unreadable)
    verifier = Verifier(rig.policy(), store, log)
    raws = [rig.issue() for _ in range(GROUP)]
    decisions = verifier.verify_batch(raws)
    for decision in decisions:
        accepted(decision)  # committed and logged: an after-commit read changes nothing
    monkeypatch.undo()
    _check(log, raws, [d.audit_index for d in decisions])  # type: ignore[misc]
