"""The AR4SI trust vector of each reason: one table, every reason in it."""

from __future__ import annotations

from attest.ear.vector import (
    ACCEPTED_VECTOR,
    REASON_CLAIMS,
    Claim,
    Status,
    denied_vector,
    status_for,
    tier,
)
from attest.reasons import Reason


def test_every_reason_has_a_claim_and_a_value_of_the_ar4si_ranges() -> None:
    # Fails when a reason is added to attest.reasons without a line in REASON_CLAIMS.
    assert set(REASON_CLAIMS) == set(Reason)
    for reason, (claim, value) in REASON_CLAIMS.items():
        assert isinstance(claim, Claim), reason
        assert -128 <= value <= 127, reason
        # A denial never reads as affirming in its own claim.
        assert tier(value) is not Status.AFFIRMING, reason


def test_an_acceptance_affirms_and_a_denial_is_contraindicated() -> None:
    assert status_for(True) is Status.AFFIRMING
    assert status_for(False) is Status.CONTRAINDICATED
    assert set(ACCEPTED_VECTOR) == set(Claim)
    assert all(tier(v) in (Status.AFFIRMING, Status.NONE) for v in ACCEPTED_VECTOR.values())


def test_the_tiers_of_ar4si() -> None:
    assert [tier(v) for v in (-1, 0, 1, 2, 31, 32, 95, 96, 127, -2)] == [
        Status.NONE, Status.NONE, Status.NONE, Status.AFFIRMING, Status.AFFIRMING,
        Status.WARNING, Status.WARNING, Status.CONTRAINDICATED, Status.CONTRAINDICATED,
        Status.NONE]


def test_a_denial_keeps_the_worst_value_of_each_claim_and_no_claim_elsewhere() -> None:
    vector = denied_vector([Reason.INTERNAL_ERROR, Reason.REPLAYED, Reason.TPM_RESET,
                            Reason.CLOCK_ROLLBACK])
    assert vector[Claim.INSTANCE_IDENTITY] == 96  # a finding beats a malfunction (-1)
    assert vector[Claim.HARDWARE] == 96  # contraindicated beats warning (tpm_reset, 32)
    assert vector[Claim.EXECUTABLES] == 0 and vector[Claim.SOURCED_DATA] == 0
    assert denied_vector([Reason.AUDIT_UNAVAILABLE])[Claim.INSTANCE_IDENTITY] == -1
