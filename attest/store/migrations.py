"""Schema migrations: what a newer attest does to a database an older one made.

Each component that owns tables (the store, the audit log) keeps its version in
``schema_versions``; a migration is one step, from version ``n`` to ``n + 1``, run in the
same transaction as the version's update, so a database is at one version or the next,
never between. A store opening a database at an older version runs the steps in order;
one at a newer version is refused (the older attest does not know its tables).

Replicas starting together on one PostgreSQL would otherwise race through the same steps:
the schema transaction first takes a transaction-scoped advisory lock (:func:`serialize`),
so one replica migrates and the others, once it commits, find the schema current. On
SQLite the schema transaction holds the write lock from its start (BEGIN IMMEDIATE).

Steps are written in the store's portable SQL (attest.store.ddl), never as a dump of the
new schema: a step must work on every database at its version, whatever rows it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from attest.store.db import Transaction
from attest.store.ddl import Table
from attest.store.schema import ADDED_IN_V2, ADDED_IN_V3

Migration = Callable[[Transaction], None]

# pg_advisory_xact_lock's key for schema changes: any constant that attest uses for
# nothing else ('attest' 'schema' in ASCII, truncated to a 64-bit signed integer).
SCHEMA_LOCK = 0x6174746573747363
_LOCK = "SELECT pg_advisory_xact_lock(:key)"


def serialize(tx: Transaction) -> None:
    """Hold the schema lock until ``tx`` ends (PostgreSQL; SQLite's write lock does it)."""
    if tx.dialect == "postgresql":
        tx.execute(_LOCK, {"key": SCHEMA_LOCK})


def _create(tables: tuple[Table, ...]) -> Migration:
    def step(tx: Transaction) -> None:
        for table in tables:
            for statement in table.create(tx.dialect):
                tx.execute(statement)
    return step


# Version 2: the tables attest added while version 1 was current (created since by every
# open, IF NOT EXISTS: most version 1 databases have them already) and the replicas'
# heartbeats (attest.store.replicas).
# Version 3: the hosts' trust states (attest.store.hosttrust), the event stream and the
# webhooks' cursors (attest.store.events).
STORE: Mapping[int, Migration] = MappingProxyType({1: _create(ADDED_IN_V2),
                                                   2: _create(ADDED_IN_V3)})
