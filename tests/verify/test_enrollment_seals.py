"""The audited verifier trusts only enrollments it sealed (attest.audit.seals): rows that
whoever can write its database inserts or rewrites are ak_unknown (issue 10, class 15).

Real artifacts from a swtpm, a real SQLite store, the attacks as SQL on it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from attest.audit import AuditLog
from attest.audit.hooks import enroll_logged
from attest.store import Store
from tests.verify.rig import HOST_ID, Rig, accepted, denied, verify_logged

STORE_ENROLLMENT = {"trusted_aks": []}
# Another TPM's AK as the store records it: enrollment does not parse the public area.
OTHER_AK = bytes.fromhex("000b" + "ab" * 32)
OTHER_EK = "cd" * 32


def _enroll_other(rig: Rig, store: Store, host: str) -> None:
    """Another TPM's AK enrolled (and sealed) as `attest enroll` does."""
    enroll_logged(store, rig.log(store), host, OTHER_AK, b"other public", b"other qn", None,
                  ek=OTHER_EK, now=int(time.time()))


def _seal(store: Store, ak_name: bytes) -> bytes | None:
    with store.read() as tx:
        mac = tx.scalar("SELECT mac FROM enrollment_seals WHERE ak_name = :ak",
                        {"ak": ak_name.hex()})
    return None if mac is None else bytes(mac)


def test_an_enrollment_is_trusted_as_sealed_and_not_once_its_host_is_rewritten(
        rig: Rig) -> None:
    store = rig.store()
    rig.enroll(store)
    assert _seal(store, rig.identity.ak_name) is not None
    verifier = rig.verifier(rig.policy(**STORE_ENROLLMENT), store)
    accepted(rig.verify_logged(verifier, rig.issue()))
    ak = rig.identity.ak_name.hex()
    with store.write() as tx:  # the AK now speaks for another host id, at decision time
        tx.execute("INSERT INTO hosts (host, first_enrolled_at, last_enrolled_at) "
                   "VALUES ('db-1', 0, 0)")
        tx.execute("UPDATE enrollments SET host = 'db-1' WHERE ak_name = :ak", {"ak": ak})
    decision = rig.verify_logged(verifier, rig.issue())
    denied(decision, "ak_unknown")
    assert "enroll again" in decision.denials[0].message
    # The seal vouches for the values, not the row: put back, they are trusted again.
    with store.write() as tx:
        tx.execute("UPDATE enrollments SET host = :host WHERE ak_name = :ak",
                   {"host": HOST_ID, "ak": ak})
    accepted(rig.verify_logged(verifier, rig.issue()))


@pytest.mark.parametrize(("column", "value"), [
    ("ek_certificate", b"\x30\x03\x02\x01\x01"),
    ("ak_qualified_name", b"\x00\x0b" + b"\x11" * 32),
])
def test_a_rewritten_enrollment_field_is_denied(rig: Rig, column: str, value: bytes) -> None:
    store = rig.store()
    rig.enroll(store)
    with store.write() as tx:
        tx.execute(f"UPDATE enrollments SET {column} = :value WHERE ak_name = :ak",  # noqa: S608
                   {"value": value, "ak": rig.identity.ak_name.hex()})
    decision = rig.verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                                 rig.issue())
    denied(decision, "ak_unknown")


def test_a_rewritten_activation_ek_is_denied(rig: Rig) -> None:
    store = rig.store()
    rig.enroll(store)
    with store.write() as tx:
        tx.execute("UPDATE ak_eks SET ek = :ek WHERE ak_name = :ak",
                   {"ek": OTHER_EK, "ak": rig.identity.ak_name.hex()})
    denied(rig.verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                             rig.issue()), "ak_unknown")


def test_another_aks_seal_copied_onto_an_inserted_row_is_denied(rig: Rig) -> None:
    store = rig.store()
    _enroll_other(rig, store, "web-2")
    stolen = _seal(store, OTHER_AK)
    assert stolen is not None
    rig.write_enrollment_row(store)
    with store.write() as tx:
        tx.execute("INSERT INTO enrollment_seals (ak_name, mac) VALUES (:ak, :mac)",
                   {"ak": rig.identity.ak_name.hex(), "mac": stolen})
    decision = rig.verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                                 rig.issue())
    denied(decision, "ak_unknown")
    assert "enrollment not made by this verifier" in decision.denials[0].message


def test_an_enrollment_written_again_without_the_log_key_loses_its_seal(rig: Rig) -> None:
    """Store.enroll alone (no audit log, so no key): the old seal must not vouch for it."""
    store = rig.store()
    rig.enroll(store)
    identity = rig.identity
    store.enroll(HOST_ID, identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                 None, int(time.time()), ek=rig.ek_id)
    assert _seal(store, identity.ak_name) is None
    denied(rig.verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                             rig.issue()), "ak_unknown")


def test_a_host_id_move_seals_the_new_ak_and_drops_the_old_ones_seal(rig: Rig) -> None:
    store = rig.store()
    _enroll_other(rig, store, HOST_ID)  # the TPM this host replaced held web-1
    rig.enroll(store, move_host=True)
    assert _seal(store, OTHER_AK) is None and store.enrollment(OTHER_AK) is None
    verifier = rig.verifier(rig.policy(**STORE_ENROLLMENT), store)
    accepted(rig.verify_logged(verifier, rig.issue()))
    # The dropped AK's row put back by a database writer is not trusted again.
    assert store.enrollment(rig.identity.ak_name) is not None
    rig.write_enrollment_row(store, ak_name=OTHER_AK, ak_public=b"other public",
                             ak_qualified_name=b"other qn", with_host=False)
    restored = store.enrollment(OTHER_AK)
    assert restored is not None and not rig.log(store).sealed(restored)


def test_a_seal_is_checked_under_the_log_key_or_the_decision_is_audit_unavailable(
        rig: Rig) -> None:
    """A log opened without its key (the audit folder out of reach) cannot check a seal:
    a named failure, never a silent skip and never internal_error."""
    store = rig.store()
    rig.enroll(store)
    decision = verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                             AuditLog.open(store, None), rig.issue())
    assert not decision.accepted
    assert set(decision.reasons) == {"audit_unavailable"}, decision.reasons


def test_a_seal_made_under_another_log_key_is_denied(rig: Rig, tmp_path: Path) -> None:
    """Another verifier's (or an attacker's own) log key seals nothing for this one."""
    store = rig.store()
    identity = rig.identity
    ek = next(e for e in identity.eks if e.kind == "rsa")
    enroll_logged(store, AuditLog.open(store, tmp_path / "other-verifier"), HOST_ID,
                  identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                  ek.certificate, ek=rig.ek_id, now=int(time.time()))
    denied(verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                         AuditLog.open(store, rig.tmp / "verifier"), rig.issue()),
           "ak_unknown")


def test_attest_enroll_then_attest_verify_accepts_and_a_rewritten_row_is_denied(
        rig: Rig) -> None:
    host = rig.host
    policy = rig.tmp / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--enrollment", "store", "--out", str(policy))
    host.ok("enroll", "--host", HOST_ID)
    first = rig.tmp / "a.jws"
    host.ok("authorize", "--subject", "ops", "--out", str(first), "--", "ls")
    assert json.loads(host.ok("verify", str(first), "--policy", str(policy),
                              "--json").stdout)["accepted"]
    with closing(sqlite3.connect(host.home / "verifier.db")) as attacker, attacker:
        attacker.execute("INSERT INTO hosts (host, first_enrolled_at, last_enrolled_at) "
                         "VALUES ('db-1', 0, 0)")
        attacker.execute("UPDATE enrollments SET host = 'db-1'")
    second = rig.tmp / "b.jws"
    host.ok("authorize", "--subject", "ops", "--out", str(second), "--", "ls")
    refused = host.run("verify", str(second), "--policy", str(policy), "--json")
    assert refused.exit_code == 1, refused.output
    assert json.loads(refused.stdout)["reasons"] == ["ak_unknown"]
