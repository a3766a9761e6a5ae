"""The audit log's tables, in the store's database under the component name "audit".

- ``audit_state``: one row: the log's size (its next index) and the last head's size
  and time. Appenders update this row first, so the database serializes them (a row
  lock on PostgreSQL, the write lock on SQLite) and indexes are never assigned twice.
- ``audit_entries``: the leaf data (canonical JSON) and its leaf hash, by index.
- ``audit_nodes``: the hash of every complete perfect subtree above the leaves, keyed
  by (level, index); written once, when its last leaf is appended. Proofs read
  O(log n) of these instead of rehashing the log.
- ``audit_heads``: every signed tree head (checkpoint note), by tree size.

Index columns are BIGINT, rendered as INTEGER on SQLite so that the key is the rowid.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

AUDIT_COMPONENT = "audit"
AUDIT_SCHEMA_VERSION = 1
STATE_ROW = 1

_Index = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

audit_state = Table(
    "audit_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("head_size", BigInteger, nullable=False),
    # Epoch seconds of the last head, or of the first entry while there is none; 0: empty.
    Column("head_at", BigInteger, nullable=False),
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("idx", _Index, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),  # >= 1; leaves are 0
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("size", _Index, primary_key=True, autoincrement=False),
    Column("signed_at", BigInteger, nullable=False),
    Column("note", Text, nullable=False),
)
