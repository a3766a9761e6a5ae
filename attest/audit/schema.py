"""The audit log's tables, in the store's database under the component name "audit".

- ``audit_state``: one row: the log's size (its next index) and the last head's size
  and time. Appenders update this row first, so the database serializes them (a row
  lock on PostgreSQL, the write lock on SQLite) and indexes are never assigned twice.
- ``audit_entries``: the leaf data (canonical JSON) and its leaf hash, by index.
- ``audit_nodes``: the hash of every complete perfect subtree above the leaves, keyed
  by (level, index); written once, when its last leaf is appended. Proofs read
  O(log n) of these instead of rehashing the log.
- ``audit_heads``: every signed tree head (checkpoint note), by tree size.
- ``audit_macs``: each entry's MAC under a key derived from the log key
  (:mod:`attest.audit.macs`): whoever writes the database can append entries with
  attest's own code, but not ones the log key signs a head over.

Index columns are BIGINT, rendered as INTEGER on SQLite so that the key is the rowid.
"""

from __future__ import annotations

from attest.store.ddl import BIGINT, BLOB, INTEGER, ROWID, TEXT, Column, Table

AUDIT_COMPONENT = "audit"
AUDIT_SCHEMA_VERSION = 1
STATE_ROW = 1

audit_state = Table("audit_state", (
    Column("id", INTEGER, primary_key=True),
    Column("size", BIGINT),
    Column("head_size", BIGINT),
    # Epoch seconds of the last head, or of the first entry while there is none; 0: empty.
    Column("head_at", BIGINT),
))

audit_entries = Table("audit_entries", (
    Column("idx", ROWID, primary_key=True),
    Column("data", BLOB),
    Column("leaf_hash", BLOB),
))

audit_nodes = Table("audit_nodes", (
    Column("level", INTEGER, primary_key=True),  # >= 1; leaves are 0
    Column("idx", BIGINT, primary_key=True),
    Column("hash", BLOB),
))

audit_heads = Table("audit_heads", (
    Column("size", ROWID, primary_key=True),
    Column("signed_at", BIGINT),
    Column("note", TEXT),
))

audit_macs = Table("audit_macs", (
    Column("idx", ROWID, primary_key=True),
    Column("mac", BLOB),
))

TABLES = (audit_state, audit_entries, audit_nodes, audit_heads, audit_macs)
