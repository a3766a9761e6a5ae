"""Revocation seals (attest.audit.revseals): what a row's seal covers, cascades sealed
in their revocation's transaction, and the set checked incrementally."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from attest.audit import AuditLog
from attest.audit.hooks import revoke_logged
from attest.audit.revseals import row_data
from attest.errors import AuditUnavailable
from attest.store import RevocationKind, Store
from tests.store.helpers import T0, clock, record

BASE: dict[str, Any] = {"id": 7, "kind": "ak", "subject": "000b" + "aa" * 32,
                        "reason": "stolen", "revoked_at": T0, "cascaded_from": None}


def _data(**fields: Any) -> bytes:
    return row_data(SimpleNamespace(**{**BASE, **fields}))  # type: ignore[arg-type]


def test_every_field_of_a_row_is_covered_and_none_runs_into_the_next() -> None:
    base = _data()
    changed = {"id": 8, "kind": "key", "subject": "000b" + "ab" * 32, "reason": "lost",
               "revoked_at": T0 + 1, "cascaded_from": "root"}
    for name, value in changed.items():
        assert _data(**{name: value}) != base, name
    assert _data(reason="stolen x", cascaded_from=None) != _data(reason="stolen",
                                                                 cascaded_from=" x")
    assert _data(cascaded_from="") != base  # absent is not empty


def _sealed(store: Store) -> tuple[list[str], int]:
    with store.read() as tx:
        rows = tx.all("SELECT revocations.subject, revocation_seals.mac FROM revocations "
                      "LEFT JOIN revocation_seals ON revocation_seals.id = revocations.id "
                      "ORDER BY revocations.id")
        count = tx.scalar("SELECT total FROM revocation_aggregate")
    assert all(row.mac is not None for row in rows)
    return [row.subject for row in rows], int(count)


def test_an_artifacts_descendants_are_sealed_with_it(store: Store, log: AuditLog) -> None:
    for depth, (jti, parent) in enumerate([("root", None), ("a", "root"), ("a1", "a")]):
        store.accept(record(jti, parent, depth=depth), nonce=None, single_use=True,
                     clock=clock(depth), now=T0)
    revoked = revoke_logged(store, log, RevocationKind.ARTIFACT, "root", "withdrawn", now=T0)
    assert revoked == [(RevocationKind.ARTIFACT, jti) for jti in ("root", "a", "a1")]
    assert _sealed(store) == (["root", "a", "a1"], 3)
    # Revoking again adds nothing: the first revocation stands, sealed once.
    revoke_logged(store, log, RevocationKind.ARTIFACT, "a", "again", now=T0 + 1)
    assert _sealed(store) == (["root", "a", "a1"], 3)
    with store.write() as tx:
        log.check_revocations(tx, "solo")  # the sealed set, and nothing on solo's line
    # On a1's line it holds a revocation: reached only when the store's own lookup
    # (Store.accept, just before) found none there, i.e. the row was taken away.
    with pytest.raises(AuditUnavailable, match="jti:a1"), store.write() as tx:
        log.check_revocations(tx, "a1")


def test_the_set_is_checked_incrementally_and_any_loss_refused(store: Store,
                                                               log: AuditLog) -> None:
    revoke_logged(store, log, RevocationKind.KEY, "000B" + "EE" * 32, "lost", now=T0)
    with store.write() as tx:
        log.check_revocations(tx, None)
    revoke_logged(store, log, RevocationKind.HOST, "web-9", "gone", now=T0)
    with store.write() as tx:
        log.check_revocations(tx, None)  # the one new row, read above the highest id seen
    assert _sealed(store) == (["000b" + "ee" * 32, "web-9"], 2)
    with store.write() as tx:
        tx.execute("DELETE FROM revocations WHERE kind = 'key'")
    with pytest.raises(AuditUnavailable, match="1 of 2 sealed revocation"), \
            store.write() as tx:
        log.check_revocations(tx, None)


def test_reseal_gives_the_set_the_incremental_seals_gave(store: Store, log: AuditLog) -> None:
    for n in range(3):
        revoke_logged(store, log, RevocationKind.ARTIFACT, f"j{n}", "leaked", now=T0 + n)
    with store.read() as tx:
        before = tx.first("SELECT total, digest, mac FROM revocation_aggregate")
    assert log.reseal_revocations() == 3
    with store.read() as tx:
        after = tx.first("SELECT total, digest, mac FROM revocation_aggregate")
    assert before is not None and after is not None
    assert (before.total, bytes(before.digest), bytes(before.mac)) == (
        after.total, bytes(after.digest), bytes(after.mac))


def test_without_the_key_nothing_is_sealed_or_checked(store: Store, log: AuditLog) -> None:
    keyless = AuditLog.open(store, None)
    with pytest.raises(AuditUnavailable):
        revoke_logged(store, keyless, RevocationKind.HOST, "web-9", "gone", now=T0)
    with store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM revocations") == 0
    with pytest.raises(AuditUnavailable), store.write() as tx:
        keyless.check_revocations(tx, None)


def test_a_revocation_committed_below_the_highest_id_seen_is_found(store: Store,
                                                                    log: AuditLog) -> None:
    """On PostgreSQL ids are handed out at insert, not commit: a revoker's row can commit
    under an id below one a running verifier has seen. It is found, not a false alarm."""
    insert = ("INSERT INTO revocations (id, kind, subject, reason, revoked_at) "
              "VALUES (:id, 'jti', :jti, 'leaked', 0)")
    with store.write() as tx:
        for n in (1, 3):
            tx.execute(insert, {"id": n, "jti": f"j{n}"})
    log.reseal_revocations()
    with store.write() as tx:
        log.check_revocations(tx, None)  # holds 1 and 3
    with store.write() as tx:  # the late commit, sealed as its revoker seals it
        tx.execute(insert, {"id": 2, "jti": "j2"})
    log.reseal_revocations()
    with store.write() as tx:
        log.check_revocations(tx, None)
        assert tx.scalar("SELECT total FROM revocation_aggregate") == 3
    with pytest.raises(AuditUnavailable, match="jti:j2"), store.write() as tx:
        tx.execute("DELETE FROM revocations WHERE id = 2")
        tx.execute(insert, {"id": 2, "jti": "other"})
        log.check_revocations(tx, "j2")  # held now, even with its row replaced
