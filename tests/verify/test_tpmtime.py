"""The TPM-time rules on their own (attest.verify.tpmtime): pure, table-driven.

The same rules run on real artifacts from a swtpm in tests/verify/test_freshness.py;
here each branch is named with clock values a real TPM could not be driven to on cue
(two boots whose clock ranges overlap).
"""

from __future__ import annotations

import pytest

from attest.evidence.structures import ClockInfo
from attest.store import EpochRecord
from attest.verify.tpmtime import QuoteTime, check_epoch, quote_time, time_denials

T = 1_764_000_000
# The current boot (counts 7/3) reported clocks 5000-9000 ms; earlier boots up to 4000 ms.
# Its clock 9000 was seen at T: reached by T + 1 at the latest.
EPOCH = EpochRecord(reset_count=7, restart_count=3, first_clock=5000, last_clock=9000,
                    floor_clock=4000, last_time=(T + 1) * 1000,
                    reset_allowed=False, reset_pending=False)
# 2300 ms of TPM time before it: at least 2000 ms of real time (a clock 15 % fast).
EARLIER = 6700


def _clock(ms: int, reset: int = 7, restart: int = 3) -> ClockInfo:
    return ClockInfo(ms, reset, restart, True)


@pytest.mark.parametrize(("clock", "deny_reset", "reason"), [
    pytest.param(_clock(9500), True, None, id="same-boot-later"),
    pytest.param(_clock(4500), True, None, id="same-boot-earlier-than-seen-is-no-rollback"),
    pytest.param(_clock(4000), False, "clock_rollback", id="same-boot-at-an-earlier-boots-clock"),
    pytest.param(_clock(9001, reset=8), False, None, id="later-boot"),
    pytest.param(_clock(9001, reset=8), True, "tpm_reset", id="later-boot-deny-reset"),
    pytest.param(_clock(9001, restart=4), False, None, id="restart-is-a-new-epoch"),
    # restartCount alone: a resume, or a TPM Restart (Shutdown(STATE), Startup(CLEAR)),
    # which resets the PCRs like a reboot; no quote tells them apart.
    pytest.param(_clock(9001, restart=4), True, "tpm_reset", id="restart-deny-reset"),
    pytest.param(_clock(6000, reset=8), False, "clock_rollback", id="other-counts-inside-range"),
    pytest.param(_clock(9000, restart=4), False, "clock_rollback", id="other-counts-at-last"),
    pytest.param(_clock(4999, reset=6), False, "stale_evidence", id="earlier-boot"),
    pytest.param(_clock(4999, reset=6), True, "stale_evidence", id="earlier-boot-deny-reset"),
    pytest.param(_clock(100, reset=99), False, "stale_evidence", id="unknown-earlier-boot"),
])
def test_placing_a_clock_among_the_boots(clock: ClockInfo, deny_reset: bool,
                                         reason: str | None) -> None:
    found = check_epoch(EPOCH, clock, deny_reset=deny_reset)
    assert (None if found is None else found.reason.value) == reason


def test_the_first_quote_starts_the_first_epoch() -> None:
    assert check_epoch(None, _clock(1), deny_reset=True) is None


def test_readmission_allows_the_next_reset_and_a_pending_reset_is_refused() -> None:
    allowed = EpochRecord(**{**EPOCH.__dict__, "reset_allowed": True})
    assert check_epoch(allowed, _clock(9001, reset=8), deny_reset=True) is None
    pending = EpochRecord(**{**EPOCH.__dict__, "reset_pending": True})
    refused = check_epoch(pending, _clock(9500), deny_reset=True)
    assert refused is not None and refused.reason.value == "tpm_reset"
    assert check_epoch(pending, _clock(9500), deny_reset=False) is None


def test_a_quote_of_a_known_epoch_has_a_latest_time() -> None:
    assert quote_time(EPOCH, _clock(EARLIER), T + 500) == QuoteTime((T - 1) * 1000, known=True)
    # 1700 ms of TPM time after it: at most 2000 ms of real time (a clock 15 % slow).
    assert quote_time(EPOCH, _clock(10_700), T + 500) == QuoteTime((T + 3) * 1000, known=True)
    assert quote_time(EPOCH, _clock(10_700), T + 1) == QuoteTime((T + 2) * 1000, known=True)
    assert quote_time(EPOCH, _clock(EARLIER, reset=8), T).known is False
    assert quote_time(None, _clock(EARLIER), T) == QuoteTime((T + 1) * 1000, known=False)


@pytest.mark.parametrize(("iat", "now", "reason"), [
    pytest.param(T - 1, T + 299, None, id="honest"),
    pytest.param(T + 29, T + 299, None, id="iat-within-skew"),
    pytest.param(T + 30, T + 299, "stale_evidence", id="iat-newer-than-the-quote"),
    pytest.param(T - 1, T + 299, None, id="age-within-max-age"),
    pytest.param(T + 20, T + 300, "stale_evidence", id="old-by-the-tpm-clock-whatever-iat"),
])
def test_iat_and_age_against_the_tpm_clock(iat: int, now: int, reason: str | None) -> None:
    when = quote_time(EPOCH, _clock(EARLIER), now)  # made by T - 1
    found = time_denials(iat, when, now, max_age=300, skew=30)
    assert [d.reason.value for d in found] == ([] if reason is None else [reason])


def test_a_challenge_answered_before_it_was_issued_by_the_tpm_clock_is_a_rollback() -> None:
    when = quote_time(EPOCH, _clock(EARLIER), T + 100)  # made by T - 1 by the TPM clock
    assert list(time_denials(T - 1, when, T + 100, max_age=None, skew=30,
                             challenged_at=T - 31)) == []
    found = time_denials(T - 1, when, T + 100, max_age=None, skew=30, challenged_at=T + 60)
    assert [d.reason.value for d in found] == ["clock_rollback"]


def test_nothing_is_inferred_from_an_epoch_seen_for_the_first_time() -> None:
    when = quote_time(None, _clock(EARLIER), T)
    assert list(time_denials(T + 3600, when, T, max_age=300, skew=30, challenged_at=T)) == []


@pytest.mark.parametrize("epoch", [None, EPOCH], ids=["first-quote", "known-epoch"])
def test_a_clock_set_beyond_any_lifetime_is_refused(epoch: EpochRecord | None) -> None:
    found = check_epoch(epoch, _clock((1 << 64) - 1, reset=8), deny_reset=False)
    assert found is not None and found.reason.value == "clock_rollback"
