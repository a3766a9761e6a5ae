"""A revocation a database writer deletes stays in force for the audited verifier
(attest.audit.revseals; issue 10, class 15): the acceptance commits only over the
revocation set the verifier sealed.

Real artifacts from a swtpm, a real SQLite store, the attacks as SQL on it; revocations
made through `attest revoke` or its library function (attest.audit.hooks.revoke_logged).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.audit import AuditLog
from attest.audit.hooks import revoke_logged
from attest.cli.main import cli
from attest.decision import Decision
from attest.errors import AuditUnavailable
from attest.store import RevocationKind, Store
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted, denied, split, verify_logged

STORE_ENROLLMENT = {"trusted_aks": []}
REMOVED = "revocations were removed from the database outside attest"


def _setup(rig: Rig) -> tuple[Store, Verifier]:
    store = rig.store()
    rig.enroll(store)
    return store, rig.verifier(rig.policy(**STORE_ENROLLMENT), store)


def _home(rig: Rig) -> Path:
    return rig.tmp / "verifier"  # rig.store()'s folder: the verifier's home


def _fresh(rig: Rig, verifier: Verifier, raw: bytes) -> Decision:
    """``raw`` through the audited path of a new verifier process (a new log, no cache)."""
    return verify_logged(verifier, AuditLog.open(verifier.store, _home(rig)), raw)


def _removed(decision: Decision) -> None:
    denied(decision, "audit_unavailable")
    assert REMOVED in decision.denials[0].message, decision.denials[0].message


def _jti(raw: bytes) -> str:
    return str(split(raw)[1]["jti"])


def _revoke(rig: Rig, *args: str) -> None:
    result = CliRunner().invoke(cli, ["revoke", *args, "--reason", "stolen"],
                                env={"ATTEST_HOME": str(_home(rig)), "ATTEST_STORE": None},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_deleted_ak_revocation_stays_in_force(rig: Rig) -> None:
    store, verifier = _setup(rig)
    accepted(rig.verify_logged(verifier, rig.issue()))
    _revoke(rig, "--ak", rig.identity.ak_name.hex())
    denied(rig.verify_logged(verifier, rig.issue()), "ak_revoked")
    with store.write() as tx:  # the writer lifts it
        tx.execute("DELETE FROM revocations WHERE kind = 'ak'")
    # Before the seals, both accepted: nothing but `attest audit verify` noticed.
    _removed(rig.verify_logged(verifier, rig.issue()))  # the running verifier
    _removed(_fresh(rig, verifier, rig.issue()))  # and a new one


def test_a_revocation_replaced_under_its_id_stays_in_force(rig: Rig) -> None:
    store, verifier = _setup(rig)
    doomed = rig.issue()
    revoke_logged(store, rig.log(store), RevocationKind.ARTIFACT, _jti(doomed), "leaked")
    # An acceptance after it: the running verifier has checked the revocation and holds it.
    accepted(rig.verify_logged(verifier, rig.issue()))
    with store.write() as tx:  # the same id, the same count: another subject
        tx.execute("UPDATE revocations SET subject = 'someone-else' WHERE kind = 'jti'")
    _removed(rig.verify_logged(verifier, doomed))
    _removed(_fresh(rig, verifier, doomed))  # a new verifier: the row's seal fails
    with store.write() as tx:  # put back, it is the sealed set again: revoked, not removed
        tx.execute("UPDATE revocations SET subject = :jti WHERE kind = 'jti'",
                   {"jti": _jti(doomed)})
    denied(_fresh(rig, verifier, doomed), "revoked")


def test_a_deleted_row_replaced_by_a_new_row_under_its_id_is_denied(rig: Rig) -> None:
    store, verifier = _setup(rig)
    revoke_logged(store, rig.log(store), RevocationKind.AK, rig.identity.ak_name, "stolen")
    with store.write() as tx:
        row = tx.first("SELECT id, revoked_at FROM revocations WHERE kind = 'ak'")
        assert row is not None
        tx.execute("DELETE FROM revocations WHERE id = :id", {"id": row.id})
        tx.execute("INSERT INTO revocations (id, kind, subject, reason, revoked_at) "
                   "VALUES (:id, 'key', :kid, 'stolen', :at)",
                   {"id": row.id, "kid": "000b" + "ee" * 32, "at": row.revoked_at})
    _removed(rig.verify_logged(verifier, rig.issue()))


def test_an_unsealed_revocation_is_refused_and_a_deleted_one_with_its_aggregate(
        rig: Rig) -> None:
    store, verifier = _setup(rig)
    accepted(rig.verify_logged(verifier, rig.issue()))
    with store.write() as tx:  # a revocation attest never made: not the verifier's set
        tx.execute("INSERT INTO revocations (kind, subject, reason, revoked_at) "
                   "VALUES ('host', 'db-9', 'forged', 0)")
    decision = rig.verify_logged(verifier, rig.issue())
    _removed(decision)
    assert "lacks the verifier's seal" in decision.denials[0].message


def test_an_aggregate_rolled_back_with_its_newest_row_is_denied_while_running(
        rig: Rig) -> None:
    store, verifier = _setup(rig)
    log = rig.log(store)
    revoke_logged(store, log, RevocationKind.ARTIFACT, "first", "leaked")
    with store.read() as tx:
        old = tx.first("SELECT total, digest, mac FROM revocation_aggregate")
    assert old is not None and old.total == 1
    revoke_logged(store, log, RevocationKind.ARTIFACT, "second", "leaked")
    accepted(rig.verify_logged(verifier, rig.issue()))  # the running verifier holds both
    with store.write() as tx:  # the newest revocation gone, the set sealed before it back
        tx.execute("DELETE FROM revocations WHERE subject = 'second'")
        tx.execute("UPDATE revocation_aggregate SET total = :total, digest = :digest, "
                   "mac = :mac", {"total": old.total, "digest": old.digest, "mac": old.mac})
    # (A new verifier process could not tell: docs/threat-model.md, known limits.)
    _removed(rig.verify_logged(verifier, rig.issue()))


def test_honest_revocations_keep_acceptances_going(rig: Rig) -> None:
    store, verifier = _setup(rig)
    log = rig.log(store)
    accepted(rig.verify_logged(verifier, rig.issue()))
    _revoke(rig, "--jti", "never-seen")
    _revoke(rig, "--key", "000b" + "ee" * 32)
    _revoke(rig, "--host", "db-9")
    revoke_logged(store, log, RevocationKind.APPROVAL, "ab" * 32, "withdrawn")
    accepted(rig.verify_logged(verifier, rig.issue()))  # read incrementally: 4 new rows
    revoke_logged(store, log, RevocationKind.ARTIFACT, "another", "leaked")
    accepted(rig.verify_logged(verifier, rig.issue()))
    accepted(_fresh(rig, verifier, rig.issue()))  # all of them, read and checked at once


def test_cascades_are_sealed(rig: Rig) -> None:
    store, verifier = _setup(rig)
    parent = rig.issue()
    accepted(rig.verify_logged(verifier, parent))
    _revoke(rig, "--jti", _jti(parent))  # its descendants (none yet) with it
    _revoke(rig, "--host", "web-1")  # the host, its EK and its AK
    with store.read() as tx:
        rows = tx.all("SELECT revocations.kind, revocation_seals.mac FROM revocations "
                      "LEFT JOIN revocation_seals ON revocation_seals.id = revocations.id")
        aggregate = tx.first("SELECT total FROM revocation_aggregate")
    assert sorted(row.kind for row in rows) == ["ak", "ek", "host", "jti"]
    assert all(row.mac is not None for row in rows)
    assert aggregate is not None and aggregate.total == 4
    denied(_fresh(rig, verifier, rig.issue()), "ak_revoked")
    with store.write() as tx:  # the cascaded AK revocation is one the writer may not drop
        tx.execute("DELETE FROM revocations WHERE kind IN ('ak', 'ek', 'host')")
    _removed(_fresh(rig, verifier, rig.issue()))


def test_a_store_from_before_the_seals_is_sealed_by_an_administrator(rig: Rig) -> None:
    store, verifier = _setup(rig)
    _revoke(rig, "--jti", "never-seen")
    with store.write() as tx:  # as a store whose revocations predate their seals
        tx.execute("DELETE FROM revocation_seals")
        tx.execute("DELETE FROM revocation_aggregate")
    decision = _fresh(rig, verifier, rig.issue())
    _removed(decision)
    assert "seal-revocations" in decision.denials[0].message
    result = CliRunner().invoke(cli, ["audit", "seal-revocations"],
                                env={"ATTEST_HOME": str(_home(rig)), "ATTEST_STORE": None},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "sealed 1 revocation" in result.output
    accepted(_fresh(rig, verifier, rig.issue()))


def test_seal_revocations_refuses_a_set_the_log_does_not_vouch_for(rig: Rig) -> None:
    store, verifier = _setup(rig)
    _revoke(rig, "--ak", rig.identity.ak_name.hex())
    with store.write() as tx:  # lifted outside attest: the admin command must not bless it
        tx.execute("DELETE FROM revocations WHERE kind = 'ak'")
    result = CliRunner().invoke(cli, ["audit", "seal-revocations"],
                                env={"ATTEST_HOME": str(_home(rig)), "ATTEST_STORE": None})
    assert result.exit_code == 1, result.output
    _removed(_fresh(rig, verifier, rig.issue()))


def test_a_log_wiped_with_its_revocations_before_any_head_does_not_open(rig: Rig) -> None:
    """Red team rt3: before the first head, nothing outside the database knew the log.
    A writer who emptied the log, the revocations and their sealed set had a fresh
    verifier start a new log with a sealed empty set: the revoked AK was accepted. A
    revocation now signs a head over its entries (kept beside the key)."""
    store, verifier = _setup(rig)
    revoke_logged(store, rig.log(store), RevocationKind.AK, rig.identity.ak_name, "stolen")
    denied(rig.verify_logged(verifier, rig.issue()), "ak_revoked")
    with store.write() as tx:
        for table in ("revocations", "revocation_seals", "revocation_aggregate",
                      "audit_entries", "audit_nodes", "audit_heads", "audit_macs"):
            tx.execute(f"DELETE FROM {table}")  # noqa: S608 - constants only
        tx.execute("UPDATE audit_state SET size = 0, head_size = 0, head_at = 0")
    _removed(rig.verify_logged(verifier, rig.issue()))  # the running verifier
    with pytest.raises(AuditUnavailable, match="does not hold the last head"):
        _fresh(rig, verifier, rig.issue())  # a new one does not open the log
