"""The verifier's decisions as the console reads them: the audit log's ``decision``
entries in the shared store, so every replica shows every replica's decisions.

A decision's *position* is its entry's index + 1: the log's size just after it. A page
rendered when the log held ``n`` entries shows the decisions before ``n`` and its
stream asks for those at ``n`` or later; a position is never negative, so it is also a
plain SSE id for ``Last-Event-ID``.

The store is read as hostile: an entry that is not JSON, or not a decision of the shape
attest writes, is skipped, never shown half-parsed. Every read is bounded by a LIMIT,
newest-first reads walk the primary key (the entry index) downwards.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from attest.audit.entry import MAX_REASONS, MAX_TEXT, EntryKind, Outcome
from attest.store import Store
from attest.store.events import Event

_NEWEST = ("SELECT idx, data FROM audit_entries WHERE idx < :below "
           "ORDER BY idx DESC LIMIT :limit")
_FROM = "SELECT idx, data FROM audit_entries WHERE idx >= :start ORDER BY idx LIMIT :limit"
_SIZE = "SELECT max(idx) FROM audit_entries"

# Entries read per transaction when walking back through the log.
CHUNK = 5000
# The newest-decisions table reads at most this many entries to fill its page: other
# kinds of entries (enrolments, state changes) are interleaved, but never this many.
MAX_PAGE_SCAN = 20_000
# Replicas stamp entries with their own clocks and groups commit a little out of time
# order: the walk back through a window goes this far past its start before stopping.
CLOCK_SKEW_S = 300
# A day's count reads at most this many entries (newest first): past it, the day's
# oldest minutes are left uncounted and the chart says so.
MAX_COUNTED = 500_000
DECISION = EntryKind.DECISION.value
RESULTS = (Outcome.ACCEPTED.value, Outcome.DENIED.value)


@dataclass(frozen=True)
class LoggedDecision:
    position: int  # the entry's index + 1
    time: int
    result: str  # "accepted" or "denied"
    reasons: tuple[str, ...]
    subject: str | None
    host: str | None

    def event(self) -> Event:
        """As a stream message (attest.server.events.message): id is the position."""
        return Event(self.position, DECISION, self.subject or "", {
            "index": self.position - 1, "result": self.result, "reasons": list(self.reasons),
            "subject": self.subject, "host": self.host, "time": self.time}, self.time)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not text")
    return value[:MAX_TEXT]


def entry(data: bytes | memoryview) -> dict[str, Any] | None:
    """An entry's JSON object with a plausible time; None for anything else."""
    try:
        value = json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    when = value.get("time")
    if not isinstance(when, int) or isinstance(when, bool) or when < 0:
        return None
    return value


def _decision(index: int, value: dict[str, Any]) -> LoggedDecision | None:
    result, reasons = value.get("decision"), value.get("reasons")
    if (value.get("kind") != DECISION or result not in RESULTS
            or not isinstance(reasons, list) or len(reasons) > MAX_REASONS):
        return None
    try:
        said = tuple(_text(r) or "" for r in reasons)
        return LoggedDecision(index + 1, value["time"], str(result), said,
                              _text(value.get("subject")), _text(value.get("host")))
    except ValueError:
        return None


def parse(index: int, data: bytes | memoryview) -> LoggedDecision | None:
    """The decision the entry at ``index`` holds; None for another kind of entry or one
    that is not what attest writes (the store is not trusted to be)."""
    value = entry(data)
    return None if value is None else _decision(index, value)


def position(store: Store) -> int:
    """The log's size: the position a page rendered now continues from."""
    with store.read() as tx:
        last = tx.scalar(_SIZE)
    return 0 if last is None else int(last) + 1


def newest(store: Store, limit: int, *, below: int | None = None,
           scan: int = MAX_PAGE_SCAN) -> tuple[list[LoggedDecision], int]:
    """Up to ``limit`` decisions, newest first, before position ``below`` (default: the
    log's size, read first), reading at most ``scan`` entries; and that position."""
    top = position(store) if below is None else below
    shown: list[LoggedDecision] = []
    cursor, read = top, 0
    while len(shown) < limit and read < scan and cursor > 0:
        with store.read() as tx:
            rows = tx.all(_NEWEST, {"below": cursor, "limit": min(CHUNK, scan - read)})
        if not rows:
            break
        for row in rows:
            found = parse(row.idx, row.data)
            if found is not None:
                shown.append(found)
                if len(shown) == limit:
                    break
        read += len(rows)
        cursor = rows[-1].idx
    return shown, top


def after(store: Store, start: int, limit: int) -> tuple[list[LoggedDecision], int, bool]:
    """The decisions at positions past ``start``, oldest first, from at most ``limit``
    entries; the position the next read starts from; whether the read was full (more
    may be waiting)."""
    with store.read() as tx:
        rows = tx.all(_FROM, {"start": start, "limit": limit})
    found = [d for d in (parse(row.idx, row.data) for row in rows) if d is not None]
    return found, (rows[-1].idx + 1 if rows else start), len(rows) == limit


@dataclass
class MinuteCounts:
    """Decisions in one minute: by result, and the denials' reasons (a denial with two
    reasons counts under each)."""

    results: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class Tally:
    """Decisions per minute (epoch minute -> counts) from ``first`` to ``last`` minute."""

    first: int
    last: int
    minutes: dict[int, MinuteCounts]
    read: int  # entries read
    complete: bool  # False: MAX_COUNTED reached before the window's start
    counted_from: int  # the counts are whole from this time on (the window's start or later)

    def recent(self, minutes: int) -> Tally:
        """The last ``minutes`` minutes of this tally."""
        first = max(self.first, self.last - minutes + 1)
        return Tally(first, self.last, {m: c for m, c in self.minutes.items() if m >= first},
                     self.read, self.counted_from <= first * 60,
                     max(self.counted_from, first * 60))


def _count(counted: dict[int, MinuteCounts], value: dict[str, Any]) -> None:
    """Add one entry (a decoded JSON object with a time) to ``counted`` if it is a
    decision: the per-entry work of a count, kept to dictionary reads."""
    result = value.get("decision")
    if value.get("kind") != DECISION or result not in RESULTS:
        return
    counts = counted.get(value["time"] // 60)
    if counts is None:
        counts = counted[value["time"] // 60] = MinuteCounts()
    counts.results[result] += 1
    reasons = value.get("reasons")
    if result == RESULTS[1] and isinstance(reasons, list) and len(reasons) <= MAX_REASONS:
        counts.reasons.update(r[:MAX_TEXT] for r in reasons if isinstance(r, str))


def _walk_back(store: Store, top: int, start: int,
               cap: int) -> tuple[dict[int, MinuteCounts], int, bool, int]:
    """Count the decisions stamped from ``start`` on among the entries before position
    ``top``, newest first, in chunks, until a whole chunk is older than ``start`` by
    :data:`CLOCK_SKEW_S` (one stray entry stamped long ago stops nothing) or ``cap``
    entries: the counts by minute, the entries read, whether the walk got past ``start``,
    and the oldest decision time it counted."""
    counted: dict[int, MinuteCounts] = {}
    cursor, read, oldest = top, 0, None
    done = cursor == 0
    while not done and read < cap:
        with store.read() as tx:
            rows = tx.all(_NEWEST, {"below": cursor, "limit": min(CHUNK, cap - read)})
        newest_seen = -1
        for row in rows:
            value = entry(row.data)
            if value is None:
                continue
            when = value["time"]
            newest_seen = max(newest_seen, when)
            if when >= start:
                _count(counted, value)
                oldest = when if oldest is None else min(oldest, when)
        read += len(rows)
        cursor = rows[-1].idx if rows else 0
        done = cursor == 0 or 0 <= newest_seen < start - CLOCK_SKEW_S
    return counted, read, done, start if done or oldest is None else oldest


def tally(store: Store, now: int, minutes: int, *, cap: int = MAX_COUNTED) -> Tally:
    """Count the decisions of the ``minutes`` minutes up to and including ``now``'s,
    walking the log back from its newest entry (:func:`_walk_back`); entries stamped
    after ``now``'s minute (a replica's clock ahead) are left out."""
    last = now // 60
    first = last - minutes + 1
    counted, read, done, since = _walk_back(store, position(store), first * 60, cap)
    return Tally(first, last, {m: c for m, c in counted.items() if m <= last}, read, done,
                 since)


class DecisionCounter:
    """:func:`tally` kept between requests in this process. The log is append-only (its
    Merkle tree and signed heads say so), so an entry counted once never changes: a
    request reads only the entries logged since the last one (every replica's, from the
    store), and walks the log back again only when this process has not counted yet or
    more than ``cap`` entries came since. Thread-safe; what it keeps is bounded by the
    window's minutes (and as many ahead, for replicas' clocks)."""

    def __init__(self, store: Store, minutes: int, *, cap: int | None = None) -> None:
        self.store = store
        self.minutes = minutes
        self._cap = cap
        self._lock = threading.Lock()
        self._counted: dict[int, MinuteCounts] = {}
        self._top = -1  # the position counted up to; -1: nothing yet
        self._since = 0  # counts are complete from this time on
        self._read = 0

    @property
    def cap(self) -> int:
        return MAX_COUNTED if self._cap is None else self._cap

    def tally(self, now: int) -> Tally:
        last = now // 60
        first = last - self.minutes + 1
        with self._lock:
            top = position(self.store)
            if self._top < 0 or top < self._top or top - self._top > self.cap:
                self._counted, self._read, _, self._since = _walk_back(
                    self.store, top, first * 60, self.cap)
            else:
                self._read_forward(top)
            self._top = top
            # Drop the minutes that left the window, and any too far ahead to enter it.
            self._counted = {m: c for m, c in self._counted.items()
                             if first <= m <= last + self.minutes}
            # Copies: the next request adds to the kept counts while this one renders.
            shown = {m: MinuteCounts(Counter(c.results), Counter(c.reasons))
                     for m, c in self._counted.items() if m <= last}
            return Tally(first, last, shown, self._read, self._since <= first * 60,
                         max(self._since, first * 60))

    def _read_forward(self, top: int) -> None:
        cursor = self._top
        while cursor < top:
            with self.store.read() as tx:
                rows = tx.all(_FROM, {"start": cursor, "limit": min(CHUNK, top - cursor)})
            if not rows:
                return
            for row in rows:
                value = entry(row.data)
                if value is not None:
                    _count(self._counted, value)
            self._read += len(rows)
            cursor = rows[-1].idx + 1
