"""The replicas' heartbeats: one row per verifier process serving on this database.

`attest serve` registers each of its processes when it starts, writes ``last_seen``
every few seconds while it reaches the database (attest.server.replicas), and removes its
row when it stops cleanly. A row whose ``last_seen`` falls behind is a replica that died
or lost the database: what an operator looks for (`attest replicas`).
Nothing here is read by a decision: a forged row misleads an operator, never a verifier.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from attest import __version__
from attest.store.db import Transaction
from attest.store.schema import MAX_HOST, replicas
from attest.store.store import Store

# A row not seen for this long is not listed as dead any more, just forgotten.
FORGET_AFTER_S = 7 * 24 * 3600

_INSERT = replicas.insert()
_BEAT = "UPDATE replicas SET last_seen = :now WHERE replica = :replica"
_REMOVE = "DELETE FROM replicas WHERE replica = :replica"
_FORGET = "DELETE FROM replicas WHERE last_seen < :before"
_ALL = ("SELECT replica, host, pid, started_at, last_seen, attest_version FROM replicas "
        "ORDER BY started_at, replica")


@dataclass(frozen=True)
class Replica:
    """One serving process, as its row records it."""

    replica: str
    host: str
    pid: int
    started_at: int
    last_seen: int
    attest_version: str

    def stale(self, now: int, after: int) -> bool:
        """Not seen for ``after`` seconds: dead, hung, or cut off from the database."""
        return now - self.last_seen > after

    def to_json(self, now: int, after: int) -> dict[str, object]:
        return {"id": self.replica, "host": self.host, "pid": self.pid,
                "started_at": self.started_at, "last_seen": self.last_seen,
                "version": self.attest_version, "stale": self.stale(now, after)}


def this_process(now: int) -> Replica:
    """A new replica record for the calling process, with a random id."""
    return Replica(replica=secrets.token_hex(8), host=socket.gethostname()[:MAX_HOST],
                   pid=os.getpid(), started_at=now, last_seen=now,
                   attest_version=__version__[:64])


def register(store: Store, replica: Replica) -> None:
    """Write ``replica``'s row, forgetting rows unseen for FORGET_AFTER_S."""
    with store.write() as tx:
        tx.execute(_FORGET, {"before": replica.last_seen - FORGET_AFTER_S})
        _insert(tx, replica)


def beat(store: Store, replica: Replica, now: int) -> None:
    """Record that ``replica`` reached the database at ``now`` (its row written again if
    it was removed meanwhile: a database restored from a backup, an operator's DELETE)."""
    with store.write() as tx:
        if tx.execute(_BEAT, {"now": now, "replica": replica.replica}) == 0:
            _insert(tx, Replica(**{**replica.__dict__, "last_seen": now}))


def remove(store: Store, replica: Replica) -> None:
    with store.write() as tx:
        tx.execute(_REMOVE, {"replica": replica.replica})


def listed(store: Store) -> list[Replica]:
    """Every replica the database has a row for, oldest first."""
    with store.read() as tx:
        return [Replica(row.replica, row.host, int(row.pid), int(row.started_at),
                        int(row.last_seen), row.attest_version) for row in tx.all(_ALL)]


def _insert(tx: Transaction, replica: Replica) -> None:
    tx.execute(_INSERT, {"replica": replica.replica, "host": replica.host, "pid": replica.pid,
                         "started_at": replica.started_at, "last_seen": replica.last_seen,
                         "attest_version": replica.attest_version})
