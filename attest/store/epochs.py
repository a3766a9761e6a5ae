"""The AK's boot epoch and TPM-clock bounds (table ``ak_epochs``), over one transaction.

:func:`advance_epoch` runs inside the acceptance transaction. It is a monotone merge
settled by the database's row lock, never by a read first: within the epoch the clock
range only widens, E's upper bound only falls and its lower bound only rises; a quote
of a later boot replaces the epoch. Two verifiers racing can at worst keep a looser
bound, which never denies honest evidence. A quote the stored epoch contradicts (an
earlier boot, or a clock another boot reported) is refused here too, which closes the
window between the verifier's snapshot and the commit.
"""

from __future__ import annotations

from attest.reasons import Reason
from attest.store.db import Conflict, Row, Transaction
from attest.store.errors import ClockRejected
from attest.store.records import EpochRecord, SeenClock
from attest.store.schema import ak_epochs

_EPOCH = ("SELECT reset_count, restart_count, first_clock, last_clock, floor_clock, "
          "origin_high, origin_low, reset_state FROM ak_epochs WHERE ak_name = :ak")
# ak_epochs.reset_state
NO_RESET = 0
RESET_ALLOWED = 1  # attest readmit: the next TPM reset starts an epoch under deny_reset
RESET_PENDING = 2  # the current epoch is a TPM reset deny_reset refused
_INSERT = ak_epochs.insert()
# Same epoch: widen the clock range, tighten E's bounds. CASE rather than MIN/LEAST,
# which differ between SQLite and PostgreSQL.
_MERGE = ("UPDATE ak_epochs SET "
          "first_clock = CASE WHEN first_clock > :ms THEN :ms ELSE first_clock END, "
          "last_clock = CASE WHEN last_clock < :ms THEN :ms ELSE last_clock END, "
          "origin_high = CASE WHEN origin_high > :high THEN :high ELSE origin_high END, "
          "{low}reset_state = CASE WHEN reset_state = 2 THEN 0 ELSE reset_state END, "
          "seen_at = :now "
          "WHERE ak_name = :ak AND reset_count = :resets AND restart_count = :restarts "
          "AND (floor_clock IS NULL OR floor_clock < :ms)")
_MERGE_LOW = ("origin_low = CASE WHEN origin_low IS NULL OR origin_low < :low "
              "THEN :low ELSE origin_low END, ")
_MERGE_WITH_LOW = _MERGE.format(low=_MERGE_LOW)
_MERGE_WITHOUT_LOW = _MERGE.format(low="")
# A later boot: its clock is beyond everything the stored epoch reported.
_REPLACE = ("UPDATE ak_epochs SET reset_count = :resets, restart_count = :restarts, "
            "floor_clock = last_clock, first_clock = :ms, last_clock = :ms, "
            "origin_high = :high, origin_low = :low, reset_state = :state, seen_at = :now "
            "WHERE ak_name = :ak AND NOT (reset_count = :resets AND restart_count = :restarts) "
            "AND last_clock < :ms")
# A pending reset is admitted as the current epoch; otherwise the next reset will be.
_READMIT = ("UPDATE ak_epochs SET reset_state = CASE WHEN reset_state = 2 THEN 0 ELSE 1 END "
            "WHERE ak_name = :ak")


def current_epoch(tx: Transaction, ak_name: str) -> EpochRecord | None:
    row = tx.first(_EPOCH, {"ak": ak_name})
    return None if row is None else _record(row)


def readmit(tx: Transaction, ak_name: str) -> bool:
    """Admit the AK's TPM reset under ``deny_reset``: the pending one (a reset already
    refused), else the next. The clock ranges stay: quotes of earlier boots stay refused."""
    return tx.execute(_READMIT, {"ak": ak_name}) > 0


def origin_high(clock_ms: int, now: int) -> int:
    """E's upper bound from a sighting at ``now``: the quote existed before now + 1 s
    (``now`` is whole seconds, truncated)."""
    return (now + 1) * 1000 - clock_ms


def advance_epoch(tx: Transaction, ak_name: str, clock: SeenClock, now: int,
                  nonce_issued_at: int | None) -> None:
    """Merge a sighting of an accepted quote into the AK's epoch, or raise ClockRejected.

    ``nonce_issued_at``: when the quote answers a challenge, the time it was issued
    (the quote was made after it: a lower bound on E).
    """
    params: dict[str, object] = {
        "ak": ak_name, "ms": clock.clock, "resets": clock.reset_count,
        "restarts": clock.restart_count, "now": now, "high": origin_high(clock.clock, now),
        "low": None if nonce_issued_at is None else nonce_issued_at * 1000 - clock.clock,
        "state": NO_RESET}
    merge = _MERGE_WITHOUT_LOW if nonce_issued_at is None else _MERGE_WITH_LOW
    for _ in range(2):
        if tx.execute(merge, params) == 1 or tx.execute(_REPLACE, params) == 1:
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
                    "origin_high": params["high"], "origin_low": params["low"],
                    "reset_state": NO_RESET, "seen_at": now})
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
        "restarts": clock.restart_count, "now": now, "high": origin_high(clock.clock, now),
        "low": None, "state": RESET_PENDING})


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
        origin_high=row.origin_high, origin_low=row.origin_low,
        reset_allowed=row.reset_state == RESET_ALLOWED,
        reset_pending=row.reset_state == RESET_PENDING)
