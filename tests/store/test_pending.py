"""The pending enrollments table (attest.store.pending) on a real database: single use
by one conditional UPDATE, the caps, the TTL purge, the trial admission that writes
nothing. On SQLite, and on PostgreSQL with ATTEST_TEST_POSTGRES (tests/store/conftest)."""

from __future__ import annotations

import pytest

from attest.store import Store, pending
from attest.store.errors import EnrollmentRefused
from attest.store.pending import PendingEnrollment, PendingFull, PendingGone

EK = "ab" * 32
NOW = 1_000_000


def row(number: int = 0, *, ek: str = EK, host: str = "web-1") -> PendingEnrollment:
    return PendingEnrollment(
        id=f"id-{number}", host=host, ak_name=f"000b{number:064x}", ak_public=b"public",
        ak_qualified_name=b"qn", ek_certificate=b"certificate", ek=ek,
        secret_hash=bytes(32), created_at=NOW, expires_at=NOW + 60, mac=b"mac")


@pytest.fixture
def pending_store(store: Store) -> Store:
    pending.open_pending(store)
    return store


def test_a_row_reads_back_as_written(pending_store: Store) -> None:
    pending.add(pending_store, row(), now=NOW, cap=10, cap_per_ek=2)
    assert pending.find(pending_store, "id-0") == row()
    assert pending.find(pending_store, "id-9") is None


def test_a_row_is_consumed_once(pending_store: Store) -> None:
    pending.add(pending_store, row(), now=NOW, cap=10, cap_per_ek=2)
    with pending_store.write() as tx:
        pending.consume(tx, "id-0", NOW + 1)
    with pytest.raises(PendingGone), pending_store.write() as tx:
        pending.consume(tx, "id-0", NOW + 2)
    found = pending.find(pending_store, "id-0")
    assert found is not None and found.used_at == NOW + 1


def test_an_expired_row_is_not_consumed_and_is_purged(pending_store: Store) -> None:
    pending.add(pending_store, row(), now=NOW, cap=10, cap_per_ek=2)
    with pytest.raises(PendingGone), pending_store.write() as tx:
        pending.consume(tx, "id-0", NOW + 61)
    assert pending.purge(pending_store, NOW + 61) == 1
    assert pending.find(pending_store, "id-0") is None


def test_the_caps_count_live_rows_only(pending_store: Store) -> None:
    pending.add(pending_store, row(0), now=NOW, cap=3, cap_per_ek=2)
    pending.add(pending_store, row(1), now=NOW, cap=3, cap_per_ek=2)
    # Past its EK's cap, the EK's oldest row makes room (an EK certificate is public:
    # refusing would let anyone lock that TPM out), and the EK stays within its cap.
    pending.add(pending_store, row(2), now=NOW, cap=3, cap_per_ek=2)
    assert pending.find(pending_store, "id-0") is None
    assert pending.find(pending_store, "id-1") is not None
    pending.add(pending_store, row(3, ek="cd" * 32), now=NOW, cap=3, cap_per_ek=2)
    with pytest.raises(PendingFull) as full:
        pending.add(pending_store, row(4, ek="ef" * 32), now=NOW, cap=3, cap_per_ek=2)
    assert not full.value.per_ek
    with pending_store.write() as tx:  # a consumed row no longer counts
        pending.consume(tx, "id-1", NOW)
    pending.add(pending_store, row(4, ek="ef" * 32), now=NOW, cap=3, cap_per_ek=2)
    # Once expired, rows are purged by the next add: room again.
    pending.add(pending_store, row(5), now=NOW + 61, cap=3, cap_per_ek=2)
    assert pending.find(pending_store, "id-2") is None


def test_the_trial_admission_refuses_and_writes_nothing(pending_store: Store) -> None:
    pending.add(pending_store, row(0), now=NOW, cap=10, cap_per_ek=4)
    with pending_store.read() as tx:
        assert tx.all("SELECT host FROM host_eks") == []
    pending_store.enroll("web-1", bytes(34), b"p", b"q", None, NOW, ek="cd" * 32)
    with pytest.raises(EnrollmentRefused):
        pending.add(pending_store, row(1), now=NOW, cap=10, cap_per_ek=4)
    assert pending.find(pending_store, "id-1") is None
