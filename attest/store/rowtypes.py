"""Every value read from SQLite has the type its column declares, or the row was changed
outside attest.

SQLite keeps whatever a statement stores, whatever the column's declared type: an
``UPDATE audit_entries SET data = CAST(data AS TEXT)`` (or a REAL, or a 10 MB string in
a VARCHAR(64)) is accepted by the database and would reach the code that hashes or
compares the value as a ``str`` where it expects ``bytes``: a TypeError, not a refusal.
Rows are checked here, as they are read, against the tables' descriptions
(:mod:`attest.store.schema`, :mod:`attest.audit.schema`,
:mod:`attest.audit.verifications`), for every reader at once.
PostgreSQL enforces the declared types itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from attest.errors import ProofError
from attest.reasons import Reason
from attest.store.ddl import BLOB, Table, Type

# The Python type sqlite3 returns for each declared type.
_PYTHON: dict[str, type] = {"INTEGER": int, "BIGINT": int, "TEXT": str, "BLOB": bytes}
# A SELECT that renames a column keeps its type: name -> the column it renames.
_ALIASES: dict[str, Type] = {"seal": BLOB}
_ALIAS_OF_COLUMN = {"ek_id": "ek"}
# Columns a row is named by in the message, in order of preference.
_KEYS = ("idx", "size", "id", "jti", "ak_name", "nonce", "host", "level")

Check = tuple[int, str, type, int | None]  # position, name, Python type, longest length


class StoreTampered(ProofError):
    """A row holds a value of a type (or length) attest never writes there: the database
    was changed outside attest. A refusal (exit 1); a verifier denies with the reason."""

    default_reason = Reason.AUDIT_UNAVAILABLE


class NotUtf8(bytes):
    """A TEXT value whose bytes are not UTF-8: attest never writes one."""


def decode_text(raw: bytes) -> str | NotUtf8:
    """sqlite3's text factory: UTF-8, strictly, else the bytes marked as such."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return NotUtf8(raw)


def _expected(kind: Type) -> tuple[type, int | None]:
    spelled = kind.sqlite
    if spelled.startswith("VARCHAR("):
        return str, int(spelled[len("VARCHAR("):-1])
    return _PYTHON[spelled], None


@functools.cache
def _declared() -> dict[str, tuple[type, int | None]]:
    # Imported here: the audit component's tables sit above the store in the layers,
    # and its schema module imports the store's.
    from attest.audit.schema import TABLES as AUDIT_TABLES
    from attest.audit.verifications import audit_verifications
    from attest.store.pending import TABLES as PENDING_TABLES
    from attest.store.schema import TABLES as STORE_TABLES

    tables: Sequence[Table] = (*STORE_TABLES, *AUDIT_TABLES, *PENDING_TABLES,
                                audit_verifications)
    declared: dict[str, tuple[type, int | None]] = {}
    for table in tables:
        for column in table.columns:
            _merge(declared, column.name, _expected(column.type))
    for alias, kind in _ALIASES.items():
        _merge(declared, alias, _expected(kind))
    for alias, column_name in _ALIAS_OF_COLUMN.items():
        _merge(declared, alias, declared[column_name])
    return declared


def _merge(declared: dict[str, tuple[type, int | None]], name: str,
           expected: tuple[type, int | None]) -> None:
    known = declared.get(name)
    if known is None:
        declared[name] = expected
        return
    if known[0] is not expected[0]:
        # A name must mean one type in every table, or reads could not be checked by name.
        raise TypeError(f"column {name} is declared as both {known[0].__name__} and "
                        f"{expected[0].__name__}")
    if known[1] is not None and expected[1] is not None:
        declared[name] = (known[0], max(known[1], expected[1]))
    else:
        declared[name] = (known[0], None)


@functools.lru_cache(maxsize=256)
def checks(names: tuple[str, ...]) -> tuple[Check, ...]:
    """What to check in rows with these column names (names no table declares, such as
    ``count(*)``, are computed by the query, not stored)."""
    declared = _declared()
    return tuple((i, name, *declared[name]) for i, name in enumerate(names) if name in declared)


def check_row(names: tuple[str, ...], found: tuple[Check, ...],
              raw: Sequence[Any]) -> None:
    """Raise :class:`StoreTampered` unless every checked value has its declared type.

    NULL passes: a NOT NULL column cannot hold it (SQLite enforces that), and an outer
    join's missing row reads as NULL in any column.
    """
    for i, name, expected, longest in found:
        value = raw[i]
        if value is None:
            continue
        # type(), not isinstance(): bool is an int, and sqlite3 never returns one.
        if type(value) is not expected:
            raise _tampered(names, raw, name, f"holds {_sql_type(value)} where attest "
                            f"writes {_sql_type_of(expected)}")
        if longest is not None and isinstance(value, str) and len(value) > longest:
            raise _tampered(names, raw, name, f"holds {len(value)} characters, more than "
                            f"the {longest} attest writes")



def maker(names: tuple[str, ...],
          make: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``make`` (raw row -> row) checking each row first; ``make`` itself when no column
    of the query is a stored one."""
    found = checks(names)
    if not found:
        return make

    def checked(raw: Any) -> Any:
        check_row(names, found, raw)
        return make(raw)
    return checked


def _tampered(names: tuple[str, ...], raw: Sequence[Any], column: str,
              what: str) -> StoreTampered:
    key = next(((k, raw[names.index(k)]) for k in _KEYS if k in names and k != column
                and type(raw[names.index(k)]) in (int, str)), None)
    shown = "" if key is None else key[1] if type(key[1]) is int else repr(str(key[1])[:80])
    where = "" if key is None else f" of the row with {key[0]} = {shown}"
    return StoreTampered(
        f"the verifier's database was changed outside attest: column {column}{where} "
        f"{what}",
        hint="restore the database from a backup; `attest audit verify` checks the audit "
             "log")


def _sql_type(value: object) -> str:
    return {int: "an INTEGER", float: "a REAL", str: "TEXT", bytes: "a BLOB",
            NotUtf8: "TEXT that is not UTF-8"}.get(
        type(value), type(value).__name__)


def _sql_type_of(expected: type) -> str:
    return {int: "an INTEGER", str: "TEXT", bytes: "a BLOB"}[expected]
