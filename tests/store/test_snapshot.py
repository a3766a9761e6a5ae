"""Store.snapshot: the verifier's reads in one transaction, each as its own method reads it."""

from __future__ import annotations

from typing import Any

import pytest

from attest.store import NonceState, RevocationKind, Snapshot, Store
from attest.store.schema import artifacts
from tests.store import reads
from tests.store.helpers import AK, HOST, KID, T0, clock, raw_artifact, record

OTHER_KID = "000b" + "77" * 32


def _as_methods_read(store: Store, *, jti: str, kid: str | None, host: str | None,
                     nonce: str | None = None, parent: str | None = None,
                     enrollment: bool = False) -> dict[str, Any]:
    enrolled = store.enrollment(AK) if enrollment else None
    if host is None and enrolled is not None:
        host = enrolled.host
    wanted = [(RevocationKind.ARTIFACT, jti), (RevocationKind.KEY, kid),
              (RevocationKind.AK, AK), (RevocationKind.HOST, host)]
    first = reads.revocation_for(store, jti=jti, kid=kid, ak=AK, host=host)
    above = None if parent is None else reads.artifact(store, parent)
    return {
        "enrollment": enrolled,
        "last_clock": reads.last_clock(store, AK),
        "nonce": None if nonce is None else reads.nonce_state(store, nonce, T0),
        "jti_seen": reads.jti_seen(store, jti),
        "first_revocation": first,
        "revocations": wanted,
        "parent": above,
        "parent_revocation": None if above is None else reads.ancestry_revoked(store, parent or ""),
    }


def _check(store: Store, *, jti: str, kid: str | None = KID, host: str | None = HOST,
           nonce: str | None = None, parent: str | None = None,
           enrollment: bool = False) -> Snapshot:
    view = store.snapshot(AK, jti=jti, now=T0, enrollment=enrollment, host=host, kid=kid,
                          nonce=nonce, seen=True, parent=parent)
    expected = _as_methods_read(store, jti=jti, kid=kid, host=host, nonce=nonce,
                                parent=parent, enrollment=enrollment)
    assert view.enrollment == expected["enrollment"]
    assert view.last_clock == expected["last_clock"]
    assert view.nonce == expected["nonce"]
    assert view.jti_seen == expected["jti_seen"]
    assert (view.revocations[0] if view.revocations else None) == expected["first_revocation"]
    named = {(k, s) for k, s in expected["revocations"] if s is not None}
    assert all((r.kind, r.subject) in named for r in view.revocations)
    assert view.parent == expected["parent"]
    assert view.parent_revocation == expected["parent_revocation"]
    return view


def test_an_empty_store(store: Store) -> None:
    view = _check(store, jti="j1")
    assert view == Snapshot(enrollment=None, last_clock=None, nonce=None, jti_seen=False,
                            revocations=(), parent=None, parent_revocation=None)


def test_clock_jti_and_nonce(store: Store) -> None:
    used, fresh = store.issue_nonce(60, T0), store.issue_nonce(60, T0)
    store.accept(record("j1"), nonce=used, single_use=True, clock=clock(500), now=T0)
    view = _check(store, jti="j1", nonce=used)
    assert (view.last_clock, view.jti_seen, view.nonce) == (clock(500), True, NonceState.USED)
    assert _check(store, jti="j2", nonce=fresh).nonce is NonceState.USABLE
    assert _check(store, jti="j2", nonce="never-issued").nonce is NonceState.UNKNOWN
    assert _check(store, jti="j2", nonce="x" * 10_000).nonce is NonceState.UNKNOWN


def test_every_revocation_most_specific_first(store: Store) -> None:
    store.revoke_host(HOST, "host", T0)
    store.revoke_ak(AK, "ak", T0)
    store.revoke_key(KID, "key", T0)
    store.revoke_artifact("j1", "artifact", T0)
    view = _check(store, jti="j1")
    assert [r.reason for r in view.revocations] == ["artifact", "key", "ak", "host"]
    assert [r.reason for r in _check(store, jti="j2", kid=OTHER_KID).revocations] == [
        "ak", "host"]


@pytest.mark.parametrize("kid", ["not hex", KID.upper(), KID + "0", "", None])
def test_a_kid_that_is_no_key_name_matches_nothing(store: Store, kid: str | None) -> None:
    store.revoke_key(KID, "key", T0)
    view = store.snapshot(AK, jti="j1", now=T0, host=HOST, kid=kid)
    assert view.revocations == ()


def test_the_enrollment_and_its_host(store: Store) -> None:
    ak_public = b"public"
    store.enroll("enrolled-host", bytes.fromhex(AK), ak_public, b"qualified", None, T0)
    view = _check(store, jti="j1", host=None, enrollment=True)
    assert view.enrollment is not None and not view.enrollment.revoked
    store.revoke_ak(AK, "ak lost", T0)
    view = _check(store, jti="j1", host=None, enrollment=True)
    assert view.enrollment is not None and view.enrollment.revocation_reason == "ak lost"
    assert [r.subject for r in view.revocations] == [AK]
    # Revoking the host revokes its AKs too; the AK's own revocation, older, is named.
    store.revoke_host("enrolled-host", "decommissioned", T0)
    view = _check(store, jti="j1", host=None, enrollment=True)
    assert view.enrollment is not None and view.enrollment.revocation_reason == "ak lost"
    assert [r.subject for r in view.revocations] == [AK, "enrolled-host"]
    # Not enrolled: no host to look up.
    assert _check(store, jti="j1", host=None, enrollment=False).enrollment is None


def test_a_parent_and_its_line(store: Store) -> None:
    store.accept(record("root"), nonce=None, single_use=True, clock=clock(1), now=T0)
    store.accept(record("mid", "root"), nonce=None, single_use=True, clock=clock(2), now=T0)
    assert _check(store, jti="child", parent="missing").parent is None
    view = _check(store, jti="child", parent="mid")
    assert view.parent is not None and view.parent_revocation is None
    store.revoke_key(KID, "key stolen", T0)  # covers both; the parent's own line first
    assert _check(store, jti="child", parent="root").parent_revocation is not None
    assert _check(store, jti="child", parent="mid").parent_revocation is not None


@pytest.mark.parametrize("revoke", ["root", "mid", "host", "ghost"])
def test_revocations_along_the_parents_line(store: Store, revoke: str) -> None:
    store.accept(record("root", host="host-0"), nonce=None, single_use=True, clock=clock(1),
                 now=T0)
    store.accept(record("mid", "root"), nonce=None, single_use=True, clock=clock(2), now=T0)
    with store.write() as conn:  # a parent revoked before it was ever stored
        conn.execute(artifacts.insert(), raw_artifact("orphan", "ghost"))
    if revoke == "host":
        store.revoke_host("host-0", "root's host", T0)
    else:
        store.revoke_artifact(revoke, "withdrawn", T0)
    for parent in ("root", "mid", "orphan"):
        _check(store, jti="child", parent=parent)


def test_a_parent_cycle(store: Store) -> None:
    with store.write() as conn:
        for jti, parent in (("x", "y"), ("y", "x")):
            conn.execute(artifacts.insert(), raw_artifact(jti, parent))
    assert _check(store, jti="child", parent="x").parent_revocation is None
    store.revoke_host(HOST, "gone", T0)
    assert _check(store, jti="child", parent="x").parent_revocation is not None
