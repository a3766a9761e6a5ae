"""Attacks on enrollment over HTTP (issue 13's red team), on a real swtpm: the host's TPM
activates, the attacker sends only what anyone can read (an EK certificate is public)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from attest.verify.enrollment import DEFAULT_CAP_PER_EK
from tests.server.test_enroll import Enrolling, _serving, denied
from tests.verify.rig import Rig


@pytest.fixture
def service(rig: Rig) -> Iterator[Enrolling]:
    yield from _serving(rig)


def test_offers_with_a_public_ek_certificate_do_not_lock_its_tpm_out(
        service: Enrolling) -> None:
    """Anyone who read a TPM's EK certificate (public: NV, the maker's site) asked for a
    challenge for it four times: its per-EK cap was full, and the TPM itself was refused
    (429) for the challenges' whole TTL, again after every new round of four."""
    for _ in range(DEFAULT_CAP_PER_EK):
        service.offer(service.request(host="attacker"))
    challenge = service.offer()  # the genuine host, right after
    accepted = service.activate(challenge, service.recover(challenge))
    assert accepted["accepted"] is True, accepted
    assert service.verify()["accepted"] is True


def test_the_offers_of_one_ek_stay_capped(service: Enrolling) -> None:
    """The per-EK cap still bounds the table: past it, the oldest challenge of that EK is
    dropped (its activation is unknown), never a row added beyond it."""
    first = service.offer(service.request(host="attacker"))
    secret = service.recover(first)
    for _ in range(DEFAULT_CAP_PER_EK):
        service.skew[0] += 1  # a second later each: "oldest" is then this order
        service.offer()
    denied(service.activate(first, secret), "enrollment_unknown")
    from attest.store import Store

    with Store.open(service.url) as store, store.read() as tx:
        live = tx.scalar("SELECT COUNT(*) FROM pending_enrollments WHERE used_at IS NULL")
    assert live == DEFAULT_CAP_PER_EK
