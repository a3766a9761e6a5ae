"""The AK's boot epoch and where its TPM clock stands in real time (table ``ak_epochs``).

:func:`advance_epoch` runs inside the acceptance transaction. It is a monotone merge
settled by the database's row lock, never by a read first: within the epoch the clock
range only widens and the bound on the real time of its highest clock only falls; a
quote of a later boot replaces the epoch, not admitted (pending) unless `attest
readmit` allowed it beforehand; only `attest readmit` admits a pending one. Two
verifiers racing can at worst keep a looser bound, which never denies honest
evidence. A quote the stored epoch contradicts (an earlier boot, or a clock another
boot reported) is refused here too, which closes the window between the verifier's
snapshot and the commit.

**Time.** A quote accepted at verifier time W (whole seconds) was made before W + 1 s.
The TPM clock runs within 15 % of real time (TPM 2.0 Library Part 1, the Clock
accuracy requirement; TPM2_ClockRateAdjust stays within it), so from a quote made by
T at clock C, a quote of the same epoch at clock C' > C was made by
T + (C' - C) / 0.85, and one at C' < C by T - (C - C') / 1.15. ``last_time`` is the
tightest such bound for ``last_clock`` over every accepted sighting: the projection
is linear, so the merge is the same in any order.
"""

from __future__ import annotations

from attest.reasons import Reason
from attest.store.db import Conflict, Row, Transaction
from attest.store.errors import ClockRejected
from attest.store.records import EpochRecord, SeenClock
from attest.store.schema import ak_epochs

# Elapsed real time per elapsed TPM time, at most 1/0.85 = 20/17 (a clock 15 % slow)
# and at least 1/1.15 = 20/23 (15 % fast): integers, so SQL and Python agree exactly.
_AHEAD = (20, 17)
_BEHIND = (20, 23)

# ak_epochs.reset_state
NO_RESET = 0
RESET_ALLOWED = 1  # attest readmit: the next TPM reset starts an epoch under deny_reset
RESET_PENDING = 2  # the current epoch is a TPM reset not admitted (attest readmit) yet

_EPOCH = ("SELECT reset_count, restart_count, first_clock, last_clock, floor_clock, "
          "last_time, reset_state FROM ak_epochs WHERE ak_name = :ak")
_INSERT = ak_epochs.insert()
# The latest real time (ms) of the later of two clocks, projected from the earlier one's:
# rounded up, so that it stays an upper bound.
_LATER_FROM_OLD = f"last_time + ((:ms - last_clock) * {_AHEAD[0]} + {_AHEAD[1] - 1}) / {_AHEAD[1]}"
_LATER_FROM_NEW = f":w + ((last_clock - :ms) * {_AHEAD[0]} + {_AHEAD[1] - 1}) / {_AHEAD[1]}"
# Same epoch: widen the clock range, tighten the bound. CASE rather than MIN/LEAST,
# which differ between SQLite and PostgreSQL; the right-hand sides read the old row.
# Built from integer constants above, never from input.
_MERGE = ("UPDATE ak_epochs SET "  # noqa: S608
          "first_clock = CASE WHEN first_clock > :ms THEN :ms ELSE first_clock END, "
          "last_clock = CASE WHEN last_clock < :ms THEN :ms ELSE last_clock END, "
          "last_time = CASE WHEN last_clock < :ms "
          f"THEN CASE WHEN :w < {_LATER_FROM_OLD} THEN :w ELSE {_LATER_FROM_OLD} END "
          f"ELSE CASE WHEN last_time < {_LATER_FROM_NEW} THEN last_time "
          f"ELSE {_LATER_FROM_NEW} END END, "
          "seen_at = :now "
          "WHERE ak_name = :ak AND reset_count = :resets AND restart_count = :restarts "
          "AND (floor_clock IS NULL OR floor_clock < :ms)")
# A later boot: its clock is beyond everything the stored epoch reported. It is admitted
# (state 0) only when `attest readmit` allowed it beforehand (state 1), else it is pending
# (2), whoever accepted it: a policy without deny_reset may accept it for itself, but only
# an administrator admits a reset for the policies that deny them.
_REPLACE = ("UPDATE ak_epochs SET reset_count = :resets, restart_count = :restarts, "
            "floor_clock = last_clock, first_clock = :ms, last_clock = :ms, "
            "last_time = :w, reset_state = CASE WHEN reset_state = 1 THEN 0 ELSE 2 END, "
            "seen_at = :now "
            "WHERE ak_name = :ak AND NOT (reset_count = :resets AND restart_count = :restarts) "
            "AND last_clock < :ms")
# A pending reset is admitted as the current epoch; otherwise the next reset will be.
_READMIT = ("UPDATE ak_epochs SET reset_state = CASE WHEN reset_state = 2 THEN 0 ELSE 1 END "
            "WHERE ak_name = :ak")


def latest_time(epoch: EpochRecord, clock_ms: int) -> int:
    """The latest real time (ms since the Unix epoch) a quote of ``epoch`` at
    ``clock_ms`` can have been made, from the epoch's stored bound."""
    if clock_ms >= epoch.last_clock:
        return epoch.last_time - (-(clock_ms - epoch.last_clock) * _AHEAD[0] // _AHEAD[1])
    return epoch.last_time - (epoch.last_clock - clock_ms) * _BEHIND[0] // _BEHIND[1]


def sighted(now: int) -> int:
    """The latest time (ms) a quote accepted at ``now`` can have been made: ``now`` is
    whole seconds, truncated."""
    return (now + 1) * 1000


def current_epoch(tx: Transaction, ak_name: str) -> EpochRecord | None:
    row = tx.first(_EPOCH, {"ak": ak_name})
    return None if row is None else _record(row)


def readmit(tx: Transaction, ak_name: str) -> bool:
    """Admit the AK's TPM reset under ``deny_reset``: the pending one (a reset already
    refused), else the next. The clock ranges stay: quotes of earlier boots stay refused."""
    return tx.execute(_READMIT, {"ak": ak_name}) > 0


def advance_epoch(tx: Transaction, ak_name: str, clock: SeenClock, now: int) -> None:
    """Merge a sighting of an accepted quote into the AK's epoch, or raise ClockRejected."""
    params: dict[str, object] = {
        "ak": ak_name, "ms": clock.clock, "resets": clock.reset_count,
        "restarts": clock.restart_count, "now": now, "w": sighted(now)}
    for _ in range(2):
        if tx.execute(_MERGE, params) == 1 or tx.execute(_REPLACE, params) == 1:
            return
        row = tx.first(_EPOCH, {"ak": ak_name})
        if row is not None:
            raise _contradiction(_record(row), clock)
        try:
            with tx.savepoint():
                tx.execute(_INSERT, {
                    "ak_name": ak_name, "reset_count": clock.reset_count,
                    "restart_count": clock.restart_count, "first_clock": clock.clock,
                    "last_clock": clock.clock, "floor_clock": None,
                    "last_time": sighted(now), "reset_state": NO_RESET, "seen_at": now})
            return
        except Conflict:
            continue  # another verifier recorded this AK's first epoch: merge with it
    raise RuntimeError(f"could not record the epoch of AK {ak_name}")  # unreachable


def record_reset(tx: Transaction, ak_name: str, clock: SeenClock, now: int) -> None:
    """Make a TPM reset that ``deny_reset`` refused the AK's current epoch, pending
    re-admission: the quote is genuine (AK-signed), so the TPM did restart, and quotes
    made before it are from an earlier boot from now on. Nothing else changes when the
    stored epoch is already this one or a later one."""
    tx.execute(_REPLACE, {
        "ak": ak_name, "ms": clock.clock, "resets": clock.reset_count,
        "restarts": clock.restart_count, "now": now, "w": sighted(now)})


def _contradiction(epoch: EpochRecord, clock: SeenClock) -> ClockRejected:
    """Why a quote neither merges into nor replaces the stored epoch."""
    if epoch.same_epoch(clock.reset_count, clock.restart_count):
        return ClockRejected(
            f"TPM clock {clock.clock} ms is not beyond {epoch.floor_clock} ms, reached in "
            "an earlier boot", Reason.CLOCK_ROLLBACK)
    if clock.clock >= epoch.first_clock:
        return ClockRejected(
            f"TPM clock {clock.clock} ms falls in the clock range of another boot "
            f"({epoch.first_clock}-{epoch.last_clock} ms)", Reason.CLOCK_ROLLBACK)
    return ClockRejected("the quote was made before the TPM restarted (a later boot "
                         "was seen meanwhile)", Reason.STALE_EVIDENCE)


def _record(row: Row) -> EpochRecord:
    return EpochRecord(
        reset_count=row.reset_count, restart_count=row.restart_count,
        first_clock=row.first_clock, last_clock=row.last_clock, floor_clock=row.floor_clock,
        last_time=row.last_time, reset_allowed=row.reset_state == RESET_ALLOWED,
        reset_pending=row.reset_state == RESET_PENDING)
