"""Tables described once, rendered as DDL for SQLite or PostgreSQL.

The rendering is the text SQLAlchemy Core rendered for these tables before the store
left it (column by column, constraints after the columns), so a database created by
an earlier attest and one created now hold the same schema, down to the ``CREATE``
text SQLite keeps in ``sqlite_master``. ``IF NOT EXISTS`` makes creating a table that
exists a no-op, as SQLAlchemy's ``checkfirst`` did.
"""

from __future__ import annotations

from typing import NamedTuple

DIALECTS = ("sqlite", "postgresql")

# Named tuples, not dataclasses: these are built at import, on `attest run`'s path, and
# a dataclass takes ten times as long to define.


class Type(NamedTuple):
    """A column type as each dialect spells it."""

    sqlite: str
    postgresql: str

    def render(self, dialect: str) -> str:
        if dialect not in DIALECTS:
            raise ValueError(f"no column types for the {dialect!r} dialect")
        return self.sqlite if dialect == "sqlite" else self.postgresql


INTEGER = Type("INTEGER", "INTEGER")
BIGINT = Type("BIGINT", "BIGINT")
TEXT = Type("TEXT", "TEXT")
BLOB = Type("BLOB", "BYTEA")
# A 64-bit key that SQLite keeps as the rowid itself (INTEGER PRIMARY KEY is the rowid).
ROWID = Type("INTEGER", "BIGINT")
# A surrogate key the database numbers when an INSERT leaves it out: the rowid on
# SQLite, a sequence on PostgreSQL.
SERIAL = Type("INTEGER", "SERIAL")


def varchar(length: int) -> Type:
    return Type(f"VARCHAR({length})", f"VARCHAR({length})")


class Column(NamedTuple):
    name: str
    type: Type
    nullable: bool = False
    primary_key: bool = False
    indexed: bool = False  # a plain index named ix_<table>_<column>
    references: tuple[str, str] | None = None  # (table, column) of a foreign key


class Table(NamedTuple):
    name: str
    columns: tuple[Column, ...]
    # (constraint name, columns) of each UNIQUE constraint over several columns.
    unique: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # (index name, columns) of each plain index over several columns.
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def insert(self, columns: tuple[str, ...] | None = None) -> str:
        """``INSERT INTO`` this table, one ``:name`` parameter per column (default: all)."""
        names = self.column_names if columns is None else columns
        unknown = set(names) - set(self.column_names)
        if unknown:
            raise ValueError(f"{self.name} has no column {', '.join(sorted(unknown))}")
        # Identifiers from this description, never from input.
        return (f"INSERT INTO {self.name} ({', '.join(names)}) "  # noqa: S608
                f"VALUES ({', '.join(':' + name for name in names)})")

    def create(self, dialect: str) -> list[str]:
        """The statements that create this table and its indexes, if they don't exist."""
        parts = [f"{c.name} {c.type.render(dialect)}{'' if c.nullable else ' NOT NULL'}"
                 for c in self.columns]
        keys = [c.name for c in self.columns if c.primary_key]
        if keys:
            parts.append(f"PRIMARY KEY ({', '.join(keys)})")
        parts.extend(f"CONSTRAINT {name} UNIQUE ({', '.join(columns)})"
                     for name, columns in self.unique)
        parts.extend(f"FOREIGN KEY({c.name}) REFERENCES {c.references[0]} ({c.references[1]})"
                     for c in self.columns if c.references is not None)
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n\t"
                      + ", \n\t".join(parts) + "\n)"]
        statements.extend(f"CREATE INDEX IF NOT EXISTS ix_{self.name}_{c.name} "
                          f"ON {self.name} ({c.name})" for c in self.columns if c.indexed)
        statements.extend(f"CREATE INDEX IF NOT EXISTS {name} ON {self.name} "
                          f"({', '.join(columns)})" for name, columns in self.indexes)
        return statements
