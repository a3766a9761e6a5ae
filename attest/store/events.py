"""The event stream: changes of trust, in the order they committed, by cursor.

:func:`record_event` writes an event inside the transaction of the change it reports
(a revocation: attest.store.revocations.record; a host's trust state), so an event
commits exactly when its change does: none lost, none invented. The id, numbered by the
database, is the stream's cursor: :func:`after` reads the events past one.

A reader polling ``id > cursor`` must never see a higher id commit before a lower one, or
it would step over the lower one for good. SQLite has one writer at a time, so ids commit
in order. On PostgreSQL a sequence hands out ids before commit, so two transactions could
commit out of order: each event's transaction first takes a transaction-scoped advisory
lock, held to its commit, so the next id is drawn only once the previous holder is done.
Events are changes of trust (revocations, state changes), not decisions: rare enough for
one writer at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from attest.store.db import Transaction
from attest.store.schema import (
    MAX_EVENT_DATA,
    MAX_EVENT_KIND,
    MAX_EVENT_SUBJECT,
    MAX_HOST,
    events,
)

# pg_advisory_xact_lock's key for event ids: 'attest' 'ev' in ASCII, unused elsewhere.
EVENTS_LOCK = 0x6174746573746576
_LOCK = "SELECT pg_advisory_xact_lock(:key)"
_INSERT = events.insert(("kind", "subject", "details", "created_at", "host"))
_AFTER = ("SELECT id, kind, subject, details, created_at FROM events WHERE id > :after "
          "ORDER BY id LIMIT :limit")
# One host's feed: by the index (host, id).
_HOST_AFTER = ("SELECT id, kind, subject, details, created_at FROM events "
               "WHERE host = :host AND id > :after ORDER BY id LIMIT :limit")
_LAST = "SELECT max(id) FROM events"

REVOCATION = "revocation"
HOST_STATE = "host_state"  # a host turned trusted, untrusted or stale (attest.store.hosttrust)
MAX_BATCH = 500


class Event(NamedTuple):
    id: int  # the cursor: resume after it
    kind: str
    subject: str
    data: Mapping[str, object]
    created_at: int

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "subject": self.subject,
                "time": self.created_at, "data": dict(self.data)}


def record_event(tx: Transaction, kind: str, subject: str, data: Mapping[str, object], *,
                 now: int, host: str | None = None) -> None:
    """Record an event in ``tx``, the write transaction of the change it reports;
    ``host``: the host it concerns (its own feed shows it), if one.

    Raises ValueError for an event that does not fit its columns (a bug of the caller:
    the change must not commit without its event, so the caller's transaction fails).
    """
    if not kind or len(kind) > MAX_EVENT_KIND or not kind.isascii():
        raise ValueError(f"an event kind is 1..{MAX_EVENT_KIND} ASCII characters: {kind!r}")
    if len(subject) > MAX_EVENT_SUBJECT or "\x00" in subject:
        raise ValueError(f"an event subject is at most {MAX_EVENT_SUBJECT} characters")
    # ensure_ascii: the row is plain ASCII, whatever text the change carried.
    text = json.dumps(dict(data), separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_EVENT_DATA:
        raise ValueError(f"an event's data is at most {MAX_EVENT_DATA} bytes of JSON")
    if tx.dialect == "postgresql":
        tx.execute(_LOCK, {"key": EVENTS_LOCK})
    if host is not None and (not host or len(host) > MAX_HOST):
        raise ValueError(f"an event's host is 1..{MAX_HOST} characters")
    tx.execute(_INSERT, {"kind": kind, "subject": subject, "details": text, "created_at": now,
                         "host": host})


def after(tx: Transaction, cursor: int, limit: int = MAX_BATCH, *,
          host: str | None = None) -> list[Event]:
    """The events after ``cursor``, oldest first, at most ``limit`` (1..MAX_BATCH); with
    ``host``, only those concerning that host (its feed)."""
    if not 1 <= limit <= MAX_BATCH:
        raise ValueError(f"limit must be 1..{MAX_BATCH}")
    if host is None:
        rows = tx.all(_AFTER, {"after": cursor, "limit": limit})
    else:
        rows = tx.all(_HOST_AFTER, {"host": host, "after": cursor, "limit": limit})
    return [Event(row.id, row.kind, row.subject, _data(row.details), row.created_at)
            for row in rows]


def last(tx: Transaction) -> int:
    """The id of the newest event, 0 when there is none."""
    found = tx.scalar(_LAST)
    return 0 if found is None else int(found)


def _data(text: str) -> Mapping[str, object]:
    # Written by record_event as a JSON object; a row someone else wrote is shown as
    # nothing rather than failing the stream for every subscriber.
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
