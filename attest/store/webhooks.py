"""Webhook delivery cursors: which event each subscriber has, and who delivers the next.

Replicas share one row per subscriber (attest.store.schema.webhook_cursors). To deliver,
a replica :func:`claim`s the event after ``last_id``: a conditional UPDATE that succeeds
for one replica only, taking a lease for :data:`LEASE_S`. After the subscriber took the
event it :func:`advance`s ``last_id`` (again only if the row is as it claimed it); on a
failure it :func:`release`s the lease so that any replica may retry. A replica that dies
mid-delivery leaves a lease that expires: the event goes out again, so delivery is at
least once, and once per subscriber while no replica dies.
"""

from __future__ import annotations

from attest.store.db import Conflict, Transaction
from attest.store.events import Event, after, last
from attest.store.schema import MAX_SUBSCRIBER, webhook_cursors

LEASE_S = 30
_INSERT = webhook_cursors.insert()
_CURSOR = "SELECT last_id FROM webhook_cursors WHERE subscriber = :subscriber"
_CLAIM = ("UPDATE webhook_cursors SET lease_owner = :owner, lease_until = :until, "
          "updated_at = :now WHERE subscriber = :subscriber AND last_id = :last_id "
          "AND (lease_until < :now OR lease_owner = :owner)")
_ADVANCE = ("UPDATE webhook_cursors SET last_id = :event_id, lease_owner = NULL, "
            "lease_until = 0, updated_at = :now WHERE subscriber = :subscriber "
            "AND last_id = :last_id AND lease_owner = :owner")
_RELEASE = ("UPDATE webhook_cursors SET lease_owner = NULL, lease_until = 0 "
            "WHERE subscriber = :subscriber AND lease_owner = :owner")


def subscribe(tx: Transaction, subscriber: str, now: int) -> int:
    """The subscriber's cursor; a new subscriber starts at the newest event (it gets
    what happens from its configuration on, not the history)."""
    if not subscriber or len(subscriber) > MAX_SUBSCRIBER:
        raise ValueError(f"a subscriber's name is 1..{MAX_SUBSCRIBER} characters")
    found = tx.scalar(_CURSOR, {"subscriber": subscriber})
    if found is not None:
        return int(found)
    start = last(tx)
    try:
        with tx.savepoint():  # another replica subscribing at once: its row stands
            tx.execute(_INSERT, {"subscriber": subscriber, "last_id": start,
                                 "lease_owner": None, "lease_until": 0, "updated_at": now})
    except Conflict:
        return int(tx.scalar(_CURSOR, {"subscriber": subscriber}))
    return start


def claim(tx: Transaction, subscriber: str, owner: str, now: int) -> tuple[int, Event] | None:
    """The next event for ``subscriber`` with the cursor it follows, leased to ``owner``;
    None when there is none, or another replica holds the lease."""
    cursor = tx.scalar(_CURSOR, {"subscriber": subscriber})
    if cursor is None:
        return None
    found = after(tx, int(cursor), 1)
    if not found:
        return None
    taken = tx.execute(_CLAIM, {"owner": owner, "until": now + LEASE_S, "now": now,
                                "subscriber": subscriber, "last_id": int(cursor)})
    return (int(cursor), found[0]) if taken == 1 else None


def advance(tx: Transaction, subscriber: str, owner: str, cursor: int, event_id: int,
            now: int) -> bool:
    """Record that ``subscriber`` took ``event_id``; False if the lease was lost."""
    return tx.execute(_ADVANCE, {"event_id": event_id, "now": now, "subscriber": subscriber,
                                 "last_id": cursor, "owner": owner}) == 1


def release(tx: Transaction, subscriber: str, owner: str) -> None:
    """Give up ``owner``'s lease (the delivery failed): any replica may retry."""
    tx.execute(_RELEASE, {"subscriber": subscriber, "owner": owner})
