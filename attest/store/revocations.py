"""Revocation queries, as functions over an open connection (the caller owns the transaction).

The lineage walks are recursive CTEs, which SQLite and PostgreSQL both run. They
use UNION ALL with an explicit level bound rather than relying on UNION's
de-duplication: the bound also stops a parent cycle that a corrupted table could
hold, and the level orders results nearest-first.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    and_,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError

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


def record(conn: Connection, kind: RevocationKind, subject: str, reason: str, now: int,
           cascaded_from: str | None = None) -> None:
    """Record a revocation unless one exists already: the first reason and time stand."""
    if find(conn, [(kind, subject)]) is not None:
        return
    try:
        # A savepoint, so that losing a race to a concurrent revoker (unique violation)
        # leaves the surrounding transaction usable on PostgreSQL too.
        with conn.begin_nested():
            conn.execute(insert(revocations).values(
                kind=kind.value, subject=subject, reason=reason, revoked_at=now,
                cascaded_from=cascaded_from))
    except IntegrityError:
        if find(conn, [(kind, subject)]) is None:
            raise


def find(conn: Connection, wanted: Iterable[tuple[RevocationKind, str]]) -> Revocation | None:
    """The most specific revocation among ``(kind, subject)`` pairs, or None."""
    match = [and_(revocations.c.kind == kind.value, revocations.c.subject == subject)
             for kind, subject in wanted]
    if not match:
        return None
    row = conn.execute(select(revocations).where(or_(*match))
                       .order_by(_PRIORITY, revocations.c.id).limit(1)).first()
    return None if row is None else _revocation(row)


def descendants(conn: Connection, jti: str) -> list[str]:
    """Every artifact descending from ``jti`` (children, grandchildren, ...), nearest first."""
    tree = (select(artifacts.c.jti, literal_column("1", Integer).label("level"))
            .where(artifacts.c.parent_jti == jti)
            .cte("tree", recursive=True))
    child = artifacts.alias("child")
    tree = tree.union_all(
        select(child.c.jti, tree.c.level + 1)
        .where(child.c.parent_jti == tree.c.jti, tree.c.level < MAX_WALK))
    nearest = func.min(tree.c.level)
    rows = conn.execute(select(tree.c.jti).group_by(tree.c.jti).order_by(nearest, tree.c.jti))
    return [row.jti for row in rows if row.jti != jti]


def in_ancestry(conn: Connection, jti: str) -> Revocation | None:
    """The nearest revocation covering ``jti`` or an ancestor the store knows.

    For the artifact and each stored ancestor, a revocation of its jti, its signing
    key, its AK or its host counts: whatever an artifact rests on, its descendants
    rest on too. A jti the store has not seen is checked by its own revocation only.
    """
    direct = find(conn, [(RevocationKind.ARTIFACT, jti)])
    if direct is not None:
        return direct
    chain = (select(artifacts.c.jti, artifacts.c.parent_jti, artifacts.c.kid,
                    artifacts.c.ak_name, artifacts.c.host,
                    literal_column("0", Integer).label("level"))
             .where(artifacts.c.jti == jti)
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
    row = conn.execute(
        select(revocations).select_from(chain.join(revocations, or_(*covers)))
        .order_by(chain.c.level, _PRIORITY, revocations.c.id).limit(1)).first()
    return None if row is None else _revocation(row)


def _is(kind: RevocationKind, column: ColumnElement[str | None]) -> ColumnElement[bool]:
    return and_(revocations.c.kind == kind.value, revocations.c.subject == column)


def _revocation(row: Row[tuple[object, ...]]) -> Revocation:
    m = row._mapping
    return Revocation(kind=RevocationKind(m["kind"]), subject=m["subject"], reason=m["reason"],
                      revoked_at=m["revoked_at"], cascaded_from=m["cascaded_from"])
