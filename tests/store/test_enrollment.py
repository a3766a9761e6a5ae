"""Enrollment records: one per AK, several AKs per host, revocation visible on them."""

from __future__ import annotations

import pytest

from attest.reasons import Reason
from attest.store import Enrollment, Store
from attest.store.errors import EnrollmentRefused
from tests.store import reads
from tests.store.helpers import T0

AK1 = bytes.fromhex("000b" + "11" * 32)
AK2 = bytes.fromhex("000b" + "22" * 32)


def test_enroll_and_read_back(store: Store) -> None:
    assert store.enrollment(AK1) is None
    store.enroll("host-1", AK1, b"public-1", b"qualified-1", b"ek-der", T0)
    assert store.enrollment(AK1) == Enrollment(
        host="host-1", ak_name=AK1, ak_public=b"public-1", ak_qualified_name=b"qualified-1",
        ek_certificate=b"ek-der", enrolled_at=T0, updated_at=T0)
    assert store.enrollment(AK1.hex()) == store.enrollment(AK1)


def test_reenrolling_the_same_ak_updates_it(store: Store) -> None:
    store.enroll("host-1", AK1, b"public-1", b"qualified-1", b"ek-der", T0)
    store.enroll("host-1", AK1, b"public-1b", b"qualified-1b", None, T0 + 100)
    got = store.enrollment(AK1)
    assert got is not None
    assert (got.ak_public, got.ak_qualified_name, got.ek_certificate) == (
        b"public-1b", b"qualified-1b", None)
    assert (got.enrolled_at, got.updated_at) == (T0, T0 + 100)


def test_a_host_may_have_several_aks_over_time(store: Store) -> None:
    # Of one TPM (EK): an AK whose TPM is unknown could be anyone's (tests/store/
    # test_identities.py).
    store.enroll("host-1", AK1, b"p1", b"q1", None, T0, ek="e1" * 32)
    store.enroll("host-1", AK2, b"p2", b"q2", None, T0 + 1, ek="e1" * 32)
    assert [e.ak_name for e in reads.enrollments_for(store, "host-1")] == [AK1, AK2]
    assert reads.enrollments_for(store, "host-2") == []


def test_revoked_ak_and_revoked_host_show_on_the_enrollment(store: Store) -> None:
    store.enroll("host-1", AK1, b"p1", b"q1", None, T0)
    store.enroll("host-2", AK2, b"p2", b"q2", None, T0)
    store.revoke_ak(AK1.hex(), "AK key material leaked", T0 + 1)
    store.revoke_host("host-2", "decommissioned", T0 + 1)
    first, second = store.enrollment(AK1), store.enrollment(AK2)
    assert first is not None and first.revoked
    assert first.revocation_reason == "AK key material leaked"
    assert second is not None and second.revoked and second.revocation_reason == "decommissioned"


def test_reenrolling_does_not_lift_a_revocation(store: Store) -> None:
    store.enroll("host-1", AK1, b"p1", b"q1", None, T0)
    store.revoke_ak(AK1, "compromised", T0 + 1)
    with pytest.raises(EnrollmentRefused) as refused:
        store.enroll("host-1", AK1, b"p1", b"q1", None, T0 + 2)
    assert refused.value.reason is Reason.AK_REVOKED
    got = store.enrollment(AK1)
    assert got is not None and got.revoked


def test_an_ak_revoked_before_enrollment_is_never_enrolled(store: Store) -> None:
    store.revoke_ak(AK1, "known bad", T0)
    with pytest.raises(EnrollmentRefused) as refused:
        store.enroll("host-1", AK1, b"p1", b"q1", None, T0 + 1)
    assert "known bad" in refused.value.message
    assert store.enrollment(AK1) is None
