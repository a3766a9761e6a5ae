"""Revocation queries, as functions over an open connection (the caller owns the transaction).

The lineage walks are recursive CTEs, which SQLite and PostgreSQL both run. They
use UNION ALL with an explicit level bound rather than relying on UNION's
de-duplication: the bound also stops a parent cycle that a corrupted table could
hold, and the level orders results nearest-first.

Every statement is built once, here, with bound parameters, and compiled once per
dialect (:mod:`attest.store.prepared`): building, hashing and compiling a statement
per call cost more than running it. Revocations are looked up by (kind, subject)
pairs in one statement (:func:`matching`) and ranked in Python, so that a check
that used to take one query per kind, and a walk for an artifact without a parent,
takes one indexed lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError

from attest.store.prepared import Prepared
from attest.store.records import Revocation, RevocationKind
from attest.store.schema import artifacts, revocations

# Longer than any lineage a policy allows by orders of magnitude; only a cycle reaches it.
MAX_WALK = 4096

# When several revocations match, report the most specific one first.
_PRIORITY = case(
    {RevocationKind.ARTIFACT.value: 0, RevocationKind.KEY.value: 1,
     RevocationKind.AK.value: 2, RevocationKind.HOST.value: 3},
    value=revocations.c.kind,
    else_=9,
)
PRIORITY = {RevocationKind.ARTIFACT: 0, RevocationKind.KEY: 1, RevocationKind.AK: 2,
            RevocationKind.HOST: 3}

# (kind, subject) pairs one matching statement takes; unused slots are NULL, which
# matches nothing. 8 hold every lookup the store makes; most need 4.
SLOTS = 8


def _matching_statement(slots: int) -> Prepared:
    return Prepared(select(revocations.c.id, revocations.c.kind, revocations.c.subject,
                           revocations.c.reason, revocations.c.revoked_at,
                           revocations.c.cascaded_from).where(or_(*(
                               and_(revocations.c.kind == bindparam(f"kind{i}"),
                                    revocations.c.subject == bindparam(f"subject{i}"))
                               for i in range(slots)))))


_MATCHING = {slots: _matching_statement(slots) for slots in (1, 4, SLOTS)}  # smallest first
_NAMES = [(f"kind{i}", f"subject{i}") for i in range(SLOTS)]
_EMPTY: dict[int, dict[str, None]] = {
    slots: {name: None for pair in _NAMES[:slots] for name in pair} for slots in _MATCHING}
_INSERT = Prepared(insert(revocations),
                   ("kind", "subject", "reason", "revoked_at", "cascaded_from"))

Ranked = tuple[int, Revocation]
"""A revocation with its row id: (priority, id) orders the most specific, then oldest, first."""


def record(conn: Connection, kind: RevocationKind, subject: str, reason: str, now: int,
           cascaded_from: str | None = None) -> None:
    """Record a revocation unless one exists already: the first reason and time stand."""
    if find(conn, [(kind, subject)]) is not None:
        return
    try:
        # A savepoint, so that losing a race to a concurrent revoker (unique violation)
        # leaves the surrounding transaction usable on PostgreSQL too.
        with conn.begin_nested():
            _INSERT.rowcount(conn, {"kind": kind.value, "subject": subject, "reason": reason,
                                   "revoked_at": now, "cascaded_from": cascaded_from})
    except IntegrityError:
        if find(conn, [(kind, subject)]) is None:
            raise


def matching(conn: Connection, wanted: Sequence[tuple[RevocationKind, str | None]]
             ) -> list[Ranked]:
    """Every revocation of a ``(kind, subject)`` pair (a None subject matches nothing),
    with its row id, most specific first (see :func:`best`)."""
    pairs: list[tuple[RevocationKind, str]] = []
    for kind, subject in wanted:
        if subject is not None and (kind, subject) not in pairs:
            pairs.append((kind, subject))
    found: dict[int, Revocation] = {}
    for start in range(0, len(pairs), SLOTS):
        chunk = pairs[start:start + SLOTS]
        slots = next(size for size in _MATCHING if size >= len(chunk))
        params: dict[str, Any] = dict(_EMPTY[slots])
        for (kind_name, subject_name), (kind, subject) in zip(_NAMES, chunk, strict=False):
            params[kind_name], params[subject_name] = kind.value, subject
        for row in _MATCHING[slots].all(conn, params):
            found[row.id] = _revocation(row)
    if len(found) < 2:
        return list(found.items())
    return sorted(found.items(), key=lambda item: (PRIORITY[item[1].kind], item[0]))


def best(found: Iterable[Ranked], wanted: Iterable[tuple[RevocationKind, str | None]]
         ) -> Revocation | None:
    """The first of ``found`` (as :func:`matching` orders them) among ``wanted`` pairs."""
    pairs = {(kind, subject) for kind, subject in wanted if subject is not None}
    return next((rev for _, rev in found if (rev.kind, rev.subject) in pairs), None)


def find(conn: Connection, wanted: Iterable[tuple[RevocationKind, str]]) -> Revocation | None:
    """The most specific revocation among ``(kind, subject)`` pairs, or None."""
    pairs: list[tuple[RevocationKind, str | None]] = list(wanted)
    if not pairs:
        return None
    found = matching(conn, pairs)
    return found[0][1] if found else None


def _descendants_statement() -> Any:
    tree = (select(artifacts.c.jti, literal_column("1", Integer).label("level"))
            .where(artifacts.c.parent_jti == bindparam("root"))
            .cte("tree", recursive=True))
    child = artifacts.alias("child")
    tree = tree.union_all(
        select(child.c.jti, tree.c.level + 1)
        .where(child.c.parent_jti == tree.c.jti, tree.c.level < MAX_WALK))
    nearest = func.min(tree.c.level)
    return select(tree.c.jti).group_by(tree.c.jti).order_by(nearest, tree.c.jti)


_DESCENDANTS = Prepared(_descendants_statement())


def descendants(conn: Connection, jti: str) -> list[str]:
    """Every artifact descending from ``jti`` (children, grandchildren, ...), nearest first."""
    rows = _DESCENDANTS.all(conn, {"root": jti})
    return [row.jti for row in rows if row.jti != jti]


def _is(kind: RevocationKind, column: ColumnElement[str | None]) -> ColumnElement[bool]:
    return and_(revocations.c.kind == kind.value, revocations.c.subject == column)


def _chain_statement() -> Any:
    chain = (select(artifacts.c.jti, artifacts.c.parent_jti, artifacts.c.kid,
                    artifacts.c.ak_name, artifacts.c.host,
                    literal_column("0", Integer).label("level"))
             .where(artifacts.c.jti == bindparam("start"))
             .cte("chain", recursive=True))
    parent = artifacts.alias("parent")
    chain = chain.union_all(
        select(parent.c.jti, parent.c.parent_jti, parent.c.kid, parent.c.ak_name,
               parent.c.host, chain.c.level + 1)
        .where(parent.c.jti == chain.c.parent_jti, chain.c.level < MAX_WALK))
    covers: list[ColumnElement[bool]] = [
        _is(RevocationKind.ARTIFACT, chain.c.jti),
        # A parent revoked before it was ever stored still breaks the chain.
        _is(RevocationKind.ARTIFACT, chain.c.parent_jti),
        _is(RevocationKind.KEY, chain.c.kid),
        _is(RevocationKind.AK, chain.c.ak_name),
        _is(RevocationKind.HOST, chain.c.host),
    ]
    return (select(revocations).select_from(chain.join(revocations, or_(*covers)))
            .order_by(chain.c.level, _PRIORITY, revocations.c.id).limit(1))


_CHAIN = Prepared(_chain_statement())


def in_ancestry(conn: Connection, jti: str) -> Revocation | None:
    """The nearest revocation covering ``jti`` or an ancestor the store knows.

    For the artifact and each stored ancestor, a revocation of its jti, its signing
    key, its AK or its host counts: whatever an artifact rests on, its descendants
    rest on too. A jti the store has not seen is checked by its own revocation only.
    """
    direct = find(conn, [(RevocationKind.ARTIFACT, jti)])
    if direct is not None:
        return direct
    return in_chain(conn, jti)


def in_chain(conn: Connection, jti: str) -> Revocation | None:
    """:func:`in_ancestry` without the lookup of ``jti``'s own revocation (made already)."""
    row = _CHAIN.first(conn, {"start": jti})
    return None if row is None else _revocation(row)


def _revocation(row: Any) -> Revocation:  # a Row with the revocation columns
    return Revocation(kind=RevocationKind(row.kind), subject=row.subject, reason=row.reason,
                      revoked_at=row.revoked_at, cascaded_from=row.cascaded_from)
