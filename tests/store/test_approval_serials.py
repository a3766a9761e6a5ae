"""The per-AK and per-TPM mark of approval serials: a host that had an artifact accepted
under a newer approval is refused an older one, in the snapshot and when the acceptance
commits."""

from __future__ import annotations

import dataclasses

import pytest

from attest.store import ApprovalRolledBack, ApprovalUse, Store
from tests.store import reads
from tests.store.helpers import AK, HOST, T0, clock, record

AUTHORITY = "000b" + "11" * 32
OTHER_AK = "000b" + "99" * 32


def _use(serial: int, **changes: str) -> ApprovalUse:
    return dataclasses.replace(ApprovalUse(f"{serial:064x}", AUTHORITY, "", serial), **changes)


def test_the_mark_rises_and_an_older_serial_is_refused_at_commit(store: Store) -> None:
    assert store.snapshot(AK, jti="a", now=T0, approval=_use(2)).approval_serial is None
    store.accept(record("a"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 approval=_use(2))
    assert store.snapshot(AK, jti="b", now=T0, approval=_use(1)).approval_serial == 2
    # Judged against an older snapshot, committed after the newer one: refused.
    with pytest.raises(ApprovalRolledBack, match="serial 1 is older than serial 2"):
        store.accept(record("b"), nonce=None, single_use=True, clock=clock(2), now=T0,
                     approval=_use(1))
    assert reads.artifact(store, "b") is None  # nothing consumed
    store.accept(record("c"), nonce=None, single_use=True, clock=clock(3), now=T0,
                 approval=_use(2))  # the same serial again is no rollback
    store.accept(record("d"), nonce=None, single_use=True, clock=clock(4), now=T0,
                 approval=_use(3))
    assert store.snapshot(AK, jti="e", now=T0, approval=_use(1)).approval_serial == 3


def test_the_mark_is_per_ak_authority_and_policy_ref(store: Store) -> None:
    store.accept(record("a"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 approval=_use(5))
    assert store.snapshot(AK, jti="b", now=T0, approval=_use(1)).approval_serial == 5
    assert store.snapshot(OTHER_AK, jti="b", now=T0, approval=_use(1)).approval_serial is None
    other_authority = _use(1, authority="000b" + "22" * 32)
    other_ref = _use(1, policy_ref="c0de")
    for use in (other_authority, other_ref):
        assert store.snapshot(AK, jti="b", now=T0, approval=use).approval_serial is None
    store.accept(record("b"), nonce=None, single_use=True, clock=clock(2), now=T0,
                 approval=other_ref)


def test_the_host_keeps_the_mark_for_its_next_ak(store: Store) -> None:
    """A new AK of the host (re-enrolled after the old one was lost) starts from the
    host's mark, in the snapshot and at commit; another host id does not."""
    store.accept(record("a"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 approval=_use(4))
    assert store.snapshot(OTHER_AK, jti="b", now=T0, host=HOST,
                          approval=_use(1)).approval_serial == 4
    assert store.snapshot(OTHER_AK, jti="b", now=T0, host="host-2",
                          approval=_use(1)).approval_serial is None
    with pytest.raises(ApprovalRolledBack, match="serial 1 is older than serial 4"):
        store.accept(record("b", ak=OTHER_AK), nonce=None, single_use=True, clock=clock(2),
                     now=T0, approval=_use(1))
    store.accept(record("c", ak=OTHER_AK, host="host-2"), nonce=None, single_use=True,
                 clock=clock(3), now=T0, approval=_use(1))


def test_the_mark_follows_the_tpm_not_the_host_id(store: Store) -> None:
    """Known EKs: a new AK of the same TPM keeps the mark; a host id moved to another TPM
    (an administrator's audited move) starts afresh with it."""
    ek1, ek2 = "e1" * 32, "e2" * 32
    third = "000b" + "33" * 32
    for ak, ek, move in ((AK, ek1, False), (OTHER_AK, ek1, False), (third, ek2, True)):
        store.enroll(HOST, bytes.fromhex(ak), b"p", b"q", None, T0, ek=ek, move_host=move)
    store.accept(record("a"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 approval=_use(4))
    assert store.snapshot(OTHER_AK, jti="b", now=T0, host=HOST,
                          approval=_use(1)).approval_serial == 4
    assert store.snapshot(third, jti="b", now=T0, host=HOST,
                          approval=_use(1)).approval_serial is None
    store.accept(record("c", ak=third), nonce=None, single_use=True, clock=clock(3), now=T0,
                 approval=_use(1))
