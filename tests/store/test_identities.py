"""A host id belongs to one TPM (EK), and revoking a host revokes that TPM for good.

Each test is an attempt to get around the rule through the store's own API, as
`attest enroll` and `attest revoke` call it.
"""

from __future__ import annotations

import pytest

from attest.reasons import Reason
from attest.store import RevocationKind, Store
from attest.store import revocations as revs
from attest.store.errors import EnrollmentRefused
from attest.store.identities import HostMove
from tests.store import reads
from tests.store.helpers import T0

AK1 = bytes.fromhex("000b" + "11" * 32)
AK2 = bytes.fromhex("000b" + "22" * 32)
AK3 = bytes.fromhex("000b" + "33" * 32)
EK1 = "e1" * 32
EK2 = "e2" * 32


def _enroll(store: Store, host: str, ak: bytes, ek: str | None, *, at: int = T0,
            move: bool = False) -> HostMove | None:
    return store.enroll(host, ak, b"p-" + ak[-1:], b"q", None, at, ek=ek, move_host=move)


def test_the_same_ak_under_a_new_host_id_after_revoke_host_is_refused(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    store.revoke_host("web-1", "stolen", T0 + 1)
    with pytest.raises(EnrollmentRefused) as refused:
        _enroll(store, "web-2", AK1, EK1, at=T0 + 2)
    assert refused.value.reason is Reason.AK_REVOKED
    assert reads.enrollments_for(store, "web-2") == []


def test_a_new_ak_of_the_same_tpm_after_revoke_host_is_refused(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    store.revoke_host("web-1", "stolen", T0 + 1)
    with pytest.raises(EnrollmentRefused) as refused:
        _enroll(store, "fresh-name", AK2, EK1, at=T0 + 2)
    assert refused.value.reason is Reason.AK_REVOKED
    assert f"ek {EK1}" in refused.value.message


def test_revoke_host_revokes_its_ek_and_every_ak_of_that_ek(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    _enroll(store, "batch-7", AK2, EK1)  # the same TPM under a second host id, earlier
    _enroll(store, "db-1", AK3, EK2)
    revoked = store.revoke_host("web-1", "stolen", T0 + 1)
    assert revoked == [(RevocationKind.HOST, "web-1"), (RevocationKind.EK, EK1),
                       (RevocationKind.AK, AK1.hex()), (RevocationKind.AK, AK2.hex())]
    other = store.enrollment(AK2)
    assert other is not None and other.revoked and other.revocation_reason == "stolen"
    untouched = store.enrollment(AK3)
    assert untouched is not None and not untouched.revoked


def test_the_snapshot_reads_an_ek_revocation_as_the_enrollments(store: Store) -> None:
    """Even an AK the host revocation did not list (enrolled concurrently) reads revoked."""
    _enroll(store, "web-1", AK1, EK1)
    with store.write() as tx:  # an EK revocation alone, as a racing revoke could leave it
        revs.record(tx, RevocationKind.EK, EK1, "stolen", T0 + 1)
    view = store.snapshot(AK1, jti="j", now=T0 + 2, enrollment=True)
    assert view.enrollment is not None and view.enrollment.revoked
    assert view.enrollment.ek == EK1


def test_another_ek_cannot_take_a_host_id(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    with pytest.raises(EnrollmentRefused, match="belongs to another TPM"):
        _enroll(store, "web-1", AK2, EK2, at=T0 + 1)
    assert [e.ak_name for e in reads.enrollments_for(store, "web-1")] == [AK1]


def test_an_enrollment_without_an_ek_cannot_take_a_bound_host_id(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    with pytest.raises(EnrollmentRefused, match="belongs to another TPM"):
        _enroll(store, "web-1", AK2, None, at=T0 + 1)


def test_an_ak_of_an_unrecorded_tpm_holds_its_host_id(store: Store) -> None:
    """A host id enrolled without an EK (or before EKs were recorded) is not free for any
    TPM to join: the newcomer could be anyone's."""
    _enroll(store, "web-1", AK1, None)
    with pytest.raises(EnrollmentRefused, match="of a TPM not recorded"):
        _enroll(store, "web-1", AK2, EK1, at=T0 + 1)
    with pytest.raises(EnrollmentRefused, match="of a TPM not recorded"):
        _enroll(store, "web-1", AK2, None, at=T0 + 1)
    _enroll(store, "web-1", AK1, None, at=T0 + 2)  # the same AK again is itself
    moved = _enroll(store, "web-1", AK2, EK1, at=T0 + 3, move=True)
    assert moved == HostMove("web-1", None, EK1, (AK1.hex(),))
    assert [e.ak_name for e in reads.enrollments_for(store, "web-1")] == [AK2]


def test_an_ak_enrolled_under_one_host_id_cannot_take_another(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    with pytest.raises(EnrollmentRefused, match="enrolled as host 'web-1'"):
        _enroll(store, "admin-1", AK1, EK1, at=T0 + 1)
    with pytest.raises(EnrollmentRefused, match="enrolled as host 'web-1'"):
        _enroll(store, "admin-1", AK1, EK1, at=T0 + 1, move=True)


def test_an_ak_cannot_change_its_ek(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    with pytest.raises(EnrollmentRefused, match="activated under another EK"):
        _enroll(store, "web-1", AK1, EK2, at=T0 + 1, move=True)


def test_the_same_tpm_enrolls_again_under_its_host_id(store: Store) -> None:
    assert _enroll(store, "web-1", AK1, EK1) is None
    assert _enroll(store, "web-1", AK1, EK1, at=T0 + 5) is None
    assert _enroll(store, "web-1", AK2, EK1, at=T0 + 6) is None  # a new AK, same TPM
    got = store.enrollment(AK2)
    assert got is not None and got.ek == EK1 and not got.revoked


def test_an_administrator_moves_a_host_id_to_a_new_tpm(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    moved = _enroll(store, "web-1", AK2, EK2, at=T0 + 1, move=True)
    assert moved == HostMove("web-1", EK1, EK2, (AK1.hex(),))
    # The old TPM's AK no longer speaks for the host id.
    assert store.enrollment(AK1) is None
    assert [e.ak_name for e in reads.enrollments_for(store, "web-1")] == [AK2]
    # Now the host id is EK2's: the old TPM is the one refused.
    with pytest.raises(EnrollmentRefused, match="belongs to another TPM"):
        _enroll(store, "web-1", AK3, EK1, at=T0 + 2)


def test_a_move_does_not_lift_a_revoked_host(store: Store) -> None:
    _enroll(store, "web-1", AK1, EK1)
    store.revoke_host("web-1", "stolen", T0 + 1)
    with pytest.raises(EnrollmentRefused) as refused:
        _enroll(store, "web-1", AK2, EK2, at=T0 + 2, move=True)
    assert refused.value.reason is Reason.AK_REVOKED


@pytest.mark.parametrize("bad", ["E1" * 32, "e1" * 31, "zz" * 32])
def test_an_ek_id_is_a_lowercase_sha256(store: Store, bad: str) -> None:
    from attest.errors import UsageError

    with pytest.raises(UsageError):
        _enroll(store, "web-1", AK1, bad)


@pytest.mark.parametrize("lookalike", ["web-1\u200b", "web-1 ", " web-1", "web-1\r\naccepted",
                                       "web\u202e1-", "web-1\u00a0", "web-1\x1b[2K"])
def test_a_host_id_that_only_looks_like_another_is_refused(store: Store,
                                                            lookalike: str) -> None:
    """The default host id is the hostname, which a host's root sets to any bytes: a
    second TPM enrolling as "web-1" plus an invisible character would hold a host id of
    its own that reads as web-1 in every listing, log and terminal (and matches `web-*`)."""
    from attest.errors import UsageError

    _enroll(store, "web-1", AK1, EK1)
    with pytest.raises(UsageError, match="host id"):
        _enroll(store, lookalike, AK2, EK2)
    assert reads.enrollments_for(store, lookalike) == []


def test_a_tpm_moved_off_its_host_id_is_revoked_by_its_ek(store: Store) -> None:
    """TPM 1 was replaced (its host id moved to TPM 2) and then stolen: revoking the host
    would revoke TPM 2, so an administrator revokes TPM 1 by its EK id, with its AKs."""
    _enroll(store, "web-1", AK1, EK1)
    _enroll(store, "web-1", AK2, EK2, at=T0 + 1, move=True)
    revoked = store.revoke_ek(EK1, "stolen", T0 + 2)
    assert revoked == [(RevocationKind.EK, EK1), (RevocationKind.AK, AK1.hex())]
    with pytest.raises(EnrollmentRefused) as refused:
        _enroll(store, "web-9", AK3, EK1, at=T0 + 3)
    assert refused.value.reason is Reason.AK_REVOKED
    assert store.enrollment(AK2) is not None and not store.enrollment(AK2).revoked
