"""Foreign schema objects: what someone who can write the database adds to change attest.

One write to the database file can install a trigger that drops or rewrites chosen
rows as attest writes them (an audit entry, an artifact), a rule that turns an INSERT
into nothing (PostgreSQL), or a table re-created with other constraints (a primary
key ``ON CONFLICT REPLACE`` makes replays pass). attest creates no trigger, view or
rule, and knows the exact text of every table and index it creates, so:

- any trigger, view or rule in the database is an error;
- a table attest owns must have the definition attest renders for it;
- an index on a table attest owns must be one attest creates.

:func:`check_schema` runs when a component's tables are ensured (every open);
:func:`check_no_triggers` is the cheap part, run inside each transaction that appends
to the audit log, so that no trigger fires in that transaction whatever was installed
after the open.
"""

from __future__ import annotations

from collections.abc import Iterable

from attest.store.db import Transaction
from attest.store.ddl import Table
from attest.store.errors import ForeignSchemaObject

_SQLITE_OBJECTS = "SELECT type, name, tbl_name, sql FROM sqlite_master"
_SQLITE_ACTIVE = ("SELECT type, name, tbl_name FROM sqlite_master "
                  "WHERE type IN ('trigger', 'view') LIMIT 1")
# Triggers the user made (foreign keys are internal triggers), rules (views' own
# _RETURN rules are not listed in pg_rules), views, row-level security: in the
# schema attest's tables live in.
_PG_TRIGGERS = ("SELECT t.tgname AS name, c.relname AS tbl_name FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT t.tgisinternal AND n.nspname = current_schema()")
_PG_RULES = ("SELECT rulename AS name, tablename AS tbl_name FROM pg_rules "
             "WHERE schemaname = current_schema()")
# Both in one statement (constants only) for check_no_triggers: it runs in every
# audited transaction, inside the log's lock, where a round trip holds replicas up.
_PG_ACTIVE = ("SELECT 'trigger' AS kind, name, tbl_name FROM ("  # noqa: S608
              + _PG_TRIGGERS + ") AS t UNION ALL SELECT 'rule', name, tbl_name FROM ("
              + _PG_RULES + ") AS r")
_PG_VIEWS = ("SELECT viewname AS name, viewname AS tbl_name FROM pg_views "
             "WHERE schemaname = current_schema() UNION ALL "
             "SELECT matviewname, matviewname FROM pg_matviews "
             "WHERE schemaname = current_schema()")
_PG_SECURED = ("SELECT c.relname AS name FROM pg_class c "
               "JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
               "AND (c.relrowsecurity OR c.relforcerowsecurity)")
_PG_INDEXES = ("SELECT indexname AS name, tablename AS tbl_name FROM pg_indexes "
               "WHERE schemaname = current_schema()")

_HINT = ("someone with write access to the database changed its schema: keep a copy for "
         "the investigation, remove the object (or restore the database from a copy that "
         "`attest audit verify` accepts), and check who can write the database")


def check_schema(tx: Transaction, tables: Iterable[Table]) -> None:
    """Raise :class:`ForeignSchemaObject` naming every object attest did not create."""
    owned = {table.name: table for table in tables}
    found = (_sqlite_findings(tx, owned) if tx.dialect == "sqlite"
             else _postgresql_findings(tx, owned))
    if found:
        raise ForeignSchemaObject(found, hint=_HINT)


def check_no_triggers(tx: Transaction) -> None:
    """The part of :func:`check_schema` that changes what a write does: triggers, views
    (and their INSTEAD OF triggers), rules. Cheap enough for every audited transaction."""
    if tx.dialect == "sqlite":
        row = tx.first(_SQLITE_ACTIVE)
        found = [] if row is None else [f"{row.type} {_q(row.name)} on {_q(row.tbl_name)}"]
    else:
        found = [f"{r.kind} {_q(r.name)} on {_q(r.tbl_name)}" for r in tx.all(_PG_ACTIVE)]
    if found:
        raise ForeignSchemaObject(found, hint=_HINT)


def _sqlite_findings(tx: Transaction, owned: dict[str, Table]) -> list[str]:
    expected_tables = {name: _creates(table, "sqlite")[0] for name, table in owned.items()}
    expected_indexes = {name: text
                        for table in owned.values()
                        for name, text in zip(_index_names(table),
                                              _creates(table, "sqlite")[1:], strict=True)}
    found: list[str] = []
    for row in tx.all(_SQLITE_OBJECTS):
        if row.type in ("trigger", "view"):
            found.append(f"{row.type} {_q(row.name)} on {_q(row.tbl_name)}")
        elif row.type == "table" and row.name in expected_tables:
            if row.sql != expected_tables[row.name]:
                found.append(f"table {_q(row.name)} is not defined as attest defines it")
        elif row.type == "index" and row.tbl_name in owned:
            # SQLite's own indexes for PRIMARY KEY and UNIQUE: no SQL text of their own.
            own = row.name.startswith(f"sqlite_autoindex_{row.tbl_name}_") and row.sql is None
            if not own and expected_indexes.get(row.name) != row.sql:
                found.append(f"index {_q(row.name)} on {_q(row.tbl_name)}")
    return found


def _postgresql_findings(tx: Transaction, owned: dict[str, Table]) -> list[str]:
    found = [f"trigger {_q(r.name)} on {_q(r.tbl_name)}" for r in tx.all(_PG_TRIGGERS)]
    found += [f"rule {_q(r.name)} on {_q(r.tbl_name)}" for r in tx.all(_PG_RULES)]
    found += [f"view {_q(r.name)}" for r in tx.all(_PG_VIEWS)]
    found += [f"row-level security on {_q(r.name)}" for r in tx.all(_PG_SECURED)
              if r.name in owned]
    allowed = {f"{table.name}_pkey" for table in owned.values()}
    allowed |= {name for table in owned.values() for name, _ in table.unique}
    allowed |= {name for table in owned.values() for name in _index_names(table)}
    found += [f"index {_q(r.name)} on {_q(r.tbl_name)}" for r in tx.all(_PG_INDEXES)
              if r.tbl_name in owned and r.name not in allowed]
    return found


def _index_names(table: Table) -> list[str]:
    """The names of ``table``'s indexes, in the order Table.create makes them."""
    return ([f"ix_{table.name}_{c.name}" for c in table.columns if c.indexed]
            + [name for name, _ in table.indexes])


def _creates(table: Table, dialect: str) -> list[str]:
    # SQLite keeps the CREATE text as given, less its IF NOT EXISTS.
    return [statement.replace(" IF NOT EXISTS", "", 1) for statement in table.create(dialect)]


def _q(name: object) -> str:
    # Names are the writer's choice: quoted, escaped and bounded before they are shown.
    return repr(str(name)[:64])
