"""Time from the TPM clock: which boot a quote belongs to, and when it can have been made.

Facts this rests on (docs/verification.md, "TPM time"):

- clockInfo.clock counts the milliseconds the TPM has been powered since TPM2_Clear.
  While clockInfo.safe is set (the quote checks it), a clock value is never reported
  twice, so the boots of one TPM occupy disjoint clock ranges, in boot order.
- resetCount and restartCount are obfuscated for an AK in the owner hierarchy: equal
  counts are one boot epoch, other counts another, with no order between them.
- Within one epoch the TPM is powered throughout, and its clock runs within 15 % of
  real time. A quote seen by the verifier at W was made before W; the store keeps the
  tightest such bound for the epoch's highest clock (attest.store.epochs), so any
  quote of the epoch has a latest possible real time, whatever its ``iat`` says. A
  quote that answers a challenge issued at Wn was made after Wn.

Everything here is pure: the store's epoch and ``now`` come in as arguments.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from attest import timetext
from attest.decision import Denial
from attest.evidence.structures import ClockInfo
from attest.reasons import Reason
from attest.store import EpochRecord
from attest.store.epochs import latest_time, sighted

# 2**48 ms is 8900 years of power-on time: a clock beyond it was set (TPM2_ClockSet),
# and the store's 64-bit arithmetic on clocks stays far from overflowing.
MAX_CLOCK_MS = 1 << 48


@dataclass(frozen=True)
class QuoteTime:
    """The latest a quote can have been made, in milliseconds since the Unix epoch.

    ``known`` is False when the verifier has no earlier sighting of the quote's epoch:
    the bound then comes from this verification alone and says nothing new.
    """

    latest_ms: int
    known: bool


def check_epoch(epoch: EpochRecord | None, clock: ClockInfo, *,
                deny_reset: bool) -> Denial | None:
    """Place a (safe) quote's clock among the AK's boots; a denial when it cannot be."""
    if clock.clock > MAX_CLOCK_MS:
        return Denial(Reason.CLOCK_ROLLBACK,
                      f"TPM clock {clock.clock} ms is beyond any TPM's lifetime: it was set, "
                      "not counted")
    if epoch is None:
        return None  # the first quote of this AK: it starts the first epoch
    if epoch.same_epoch(clock.reset_count, clock.restart_count):
        if deny_reset and epoch.reset_pending:
            return Denial(Reason.TPM_RESET,
                          "the TPM was reset and the host is not re-admitted since "
                          "(attest readmit)")
        if epoch.floor_clock is not None and clock.clock <= epoch.floor_clock:
            return Denial(Reason.CLOCK_ROLLBACK,
                          f"TPM clock {clock.clock} ms is not beyond {epoch.floor_clock} ms, "
                          "reached in an earlier boot of this TPM")
        return None  # one boot: any order within it (its age is judged by quote_time)
    if clock.clock > epoch.last_clock:
        # Beyond everything seen: a later boot. A changed restartCount alone is no less
        # one: TPM2_Shutdown(STATE), which needs no authorization, then a reset into
        # TPM2_Startup(CLEAR) is a TPM Restart, which resets the PCRs as a reboot does and
        # changes restartCount only. A quote cannot tell it from a resume (Startup(STATE)),
        # so under deny_reset both need re-admission.
        if deny_reset and not epoch.reset_allowed:
            what = ("reset" if clock.reset_count != epoch.reset_count else
                    "restarted (restartCount changed: a resume from suspend, or a reboot "
                    "after TPM2_Shutdown(STATE), which resets the PCRs)")
            return Denial(Reason.TPM_RESET,
                          f"the TPM was {what} since the last accepted quote; an "
                          "administrator must re-admit the host (attest readmit)")
        return None
    if clock.clock >= epoch.first_clock:
        return Denial(Reason.CLOCK_ROLLBACK,
                      f"TPM clock {clock.clock} ms falls in the range of another boot "
                      f"({epoch.first_clock}-{epoch.last_clock} ms): one TPM cannot "
                      "report it twice")
    return Denial(Reason.STALE_EVIDENCE,
                  f"the quote was made before the TPM restarted (its clock {clock.clock} ms "
                  f"precedes the current boot's first, {epoch.first_clock} ms)")


def quote_time(epoch: EpochRecord | None, clock: ClockInfo, now: int) -> QuoteTime:
    """The latest the quote can have been made: from the epoch's bound, and now."""
    latest = sighted(now)  # it exists now
    if epoch is None or not epoch.same_epoch(clock.reset_count, clock.restart_count):
        return QuoteTime(latest, known=False)
    return QuoteTime(min(latest, latest_time(epoch, clock.clock)), known=True)


def time_denials(iat: int, when: QuoteTime, now: int, *, max_age: int | None,
                 skew: int, challenged_at: int | None = None) -> Generator[Denial, None, None]:
    """Yield the denial of ``iat`` against the quote's latest possible time, or of the
    quote's own age (at most one).

    ``max_age`` is None when a challenge bounds the age instead (nonce mode);
    ``challenged_at`` is when that challenge was issued: the quote was made after it.
    The skew covers the host's clock against the verifier's (``iat``) and verifier
    replicas' clocks against each other (a challenge issued by one, a sighting made by
    another); the TPM clock's rate is allowed for in the bound itself. The age needs
    no skew: it is measured on the verifiers' clocks alone.
    """
    if not when.known:
        return  # nothing beyond this sighting: not_yet_valid and max_age by iat decide
    if challenged_at is not None and challenged_at * 1000 > when.latest_ms + skew * 1000:
        # Made after the challenge, yet by its clock before it: within one boot the TPM
        # clock ran behind real time. A restored (cloned or rolled-back) TPM state does that.
        yield Denial(Reason.CLOCK_ROLLBACK,
                     f"the quote answers a challenge issued at {timetext.iso(challenged_at)}, "
                     f"but by the TPM clock it was made by "
                     f"{timetext.iso(when.latest_ms // 1000)}: the TPM "
                     "clock went back within this boot")
        return
    if iat * 1000 > when.latest_ms + skew * 1000:
        yield Denial(Reason.STALE_EVIDENCE,
                     f"issued at {timetext.iso(iat)} (iat), but by the TPM clock its quote "
                     f"was made by {timetext.iso(when.latest_ms // 1000)}: the artifact "
                     "claims to be newer "
                     "than its evidence")
        return
    age_ms = now * 1000 - when.latest_ms
    if max_age is not None and age_ms > max_age * 1000:
        yield Denial(Reason.STALE_EVIDENCE,
                     f"by the TPM clock its quote is at least {age_ms // 1000} s old; "
                     f"at most {max_age} s")
