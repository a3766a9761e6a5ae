"""Keys the verifier replicas share through their database, each created once.

The first replica to start inserts a fresh random key under its name; every other
replica, starting at the same moment or later, reads that one. The insert is the
arbiter: on SQLite the write transaction holds the lock from its start, so the second
opener finds the first's row; on PostgreSQL the second insert conflicts on the primary
key (in a savepoint) and the loser reads the winner's row. Either way all agree on one.

The database is where the key lives, so whoever reads the database can mint what it
keys (a challenge: attest.store.challenges). That is no more than reading the nonces
table gave before: a challenge only proves freshness, and the database is the
verifier's own (0600 on SQLite; a role of its own on PostgreSQL): docs/service.md,
Challenges.
"""

from __future__ import annotations

import secrets

from attest.errors import StoreUnavailable
from attest.store.db import Conflict, Transaction
from attest.store.schema import service_keys

CHALLENGE_KEY = "challenge-mac-v1"
_READ = "SELECT secret FROM service_keys WHERE key_name = :name"
_INSERT = service_keys.insert()


def ensure(tx: Transaction, name: str, size: int, now: int) -> bytes:
    """The key ``name`` (``size`` random bytes), created in ``tx`` if there is none yet."""
    found = find(tx, name, size)
    if found is not None:
        return found
    key = secrets.token_bytes(size)
    try:
        with tx.savepoint():
            tx.execute(_INSERT, {"key_name": name, "secret": key, "created_at": now})
    except Conflict:
        # Another replica created it between our read and our insert (read committed).
        won = find(tx, name, size)
        if won is None:
            raise StoreUnavailable(f"the shared key {name!r} conflicts yet can't be read") \
                from None
        return won
    return key


def find(tx: Transaction, name: str, size: int) -> bytes | None:
    """The key ``name`` if the database holds one (of ``size`` bytes), else None."""
    value = tx.scalar(_READ, {"name": name})
    if value is None:
        return None
    key = bytes(value)
    if len(key) != size:
        # A key of another size is not one we made: refuse to mint or check with it.
        raise StoreUnavailable(f"the shared key {name!r} in the store is {len(key)} bytes, "
                               f"not {size}", hint="the store was changed by hand: restore it")
    return key
