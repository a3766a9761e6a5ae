"""A host enrolled again, or its AK re-admitted after a TPM reset, forgets the TPM clock of
its last state-moving report (attest.store.reportclock): its TPM's clock may have
restarted below it, and its reports would otherwise move nothing, ever."""

from __future__ import annotations

from attest.store import Store
from tests.store.helpers import T0

AK1 = bytes.fromhex("000b" + "11" * 32)
EK1 = "e1" * 32


def _trusted_at(store: Store, clock: int) -> None:
    with store.write() as tx:
        tx.execute("INSERT INTO host_trust (host, state, reasons, changed_at, reported_at, "
                   "audit_index, report_clock) VALUES ('web-1', 'trusted', '', 1, 1, NULL, "
                   ":clock)", {"clock": clock})


def _clock(store: Store, host: str = "web-1") -> object:
    with store.read() as tx:
        return tx.scalar("SELECT report_clock FROM host_trust WHERE host = :host",
                         {"host": host})


def test_enrolling_again_forgets_the_hosts_report_clock(store: Store) -> None:
    store.enroll("web-1", AK1, b"p1", b"q", None, T0, ek=EK1)
    _trusted_at(store, 999_999)
    store.enroll("web-1", AK1, b"p1", b"q", None, T0 + 1, ek=EK1)
    assert _clock(store) is None


def test_readmitting_an_ak_after_a_tpm_reset_forgets_its_hosts_report_clock(
        store: Store) -> None:
    store.enroll("web-1", AK1, b"p1", b"q", None, T0, ek=EK1)
    _trusted_at(store, 999_999)
    store.forget_clock(AK1)
    assert _clock(store) is None


def test_another_hosts_enrollment_keeps_the_clock(store: Store) -> None:
    _trusted_at(store, 999_999)
    store.enroll("web-2", AK1, b"p1", b"q", None, T0, ek=EK1)
    assert _clock(store) == 999_999
