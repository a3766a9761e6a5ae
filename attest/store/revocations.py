"""Revocation queries, as functions over an open transaction (the caller owns it).

The lineage walks are recursive CTEs, which SQLite and PostgreSQL both run. They
use UNION ALL with an explicit level bound rather than relying on UNION's
de-duplication: the bound also stops a parent cycle that a corrupted table could
hold, and the level orders results nearest-first.

Revocations are looked up by (kind, subject) pairs in one statement
(:func:`matching`) and ranked in Python, so that a check that used to take one query
per kind, and a walk for an artifact without a parent, takes one indexed lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from attest.store import eventhosts, events
from attest.store.db import Conflict, Row, Transaction
from attest.store.records import Revocation, RevocationKind
from attest.store.schema import revocations

# Longer than any lineage a policy allows by orders of magnitude; only a cycle reaches it.
MAX_WALK = 4096

PRIORITY = {RevocationKind.ARTIFACT: 0, RevocationKind.KEY: 1, RevocationKind.AK: 2,
            RevocationKind.EK: 3, RevocationKind.HOST: 4, RevocationKind.APPROVAL: 5}

# (kind, subject) pairs one matching statement takes; unused slots are NULL, which
# matches nothing. 8 hold every lookup the store makes; most need 4.
SLOTS = 8

def _matching_statement(slots: int) -> str:
    pairs = " OR ".join(f"(kind = :kind{i} AND subject = :subject{i})" for i in range(slots))
    return ("SELECT id, kind, subject, reason, revoked_at, cascaded_from "  # noqa: S608
            f"FROM revocations WHERE {pairs}")  # (constants only)


_MATCHING = {slots: _matching_statement(slots) for slots in (1, 4, SLOTS)}  # smallest first
_NAMES = [(f"kind{i}", f"subject{i}") for i in range(SLOTS)]
_EMPTY: dict[int, dict[str, None]] = {
    slots: {name: None for pair in _NAMES[:slots] for name in pair} for slots in _MATCHING}
_INSERT = revocations.insert(("kind", "subject", "reason", "revoked_at", "cascaded_from"))

# Every descendant of :root, once, nearest first.
_DESCENDANTS = """\
WITH RECURSIVE tree(jti, level) AS (
    SELECT jti, 1 FROM artifacts WHERE parent_jti = :root
    UNION ALL
    SELECT child.jti, tree.level + 1 FROM artifacts AS child, tree
    WHERE child.parent_jti = tree.jti AND tree.level < :max_walk
)
SELECT jti FROM tree GROUP BY jti ORDER BY min(level), jti"""

# The nearest revocation of :start's line: for the artifact and each stored ancestor,
# its jti, its parent's jti (a parent revoked before it was ever stored still breaks
# the chain), its signing key, its AK or its host; nearest level first, then the most
# specific kind (PRIORITY), then the oldest. The kinds are RevocationKind's values.
_RANK = " ".join(f"WHEN '{kind.value}' THEN {rank}" for kind, rank in PRIORITY.items())
_CHAIN = f"""\
WITH RECURSIVE chain(jti, parent_jti, kid, ak_name, host, approval, level) AS (
    SELECT artifacts.jti, parent_jti, kid, ak_name, host, artifact_approvals.approval, 0
    FROM artifacts LEFT JOIN artifact_approvals
         ON artifact_approvals.jti = artifacts.jti
    WHERE artifacts.jti = :start
    UNION ALL
    SELECT parent.jti, parent.parent_jti, parent.kid, parent.ak_name, parent.host,
           used.approval, chain.level + 1
    FROM chain JOIN artifacts AS parent ON parent.jti = chain.parent_jti
         LEFT JOIN artifact_approvals AS used ON used.jti = parent.jti
    WHERE chain.level < :max_walk
)
SELECT revocations.*
FROM chain JOIN revocations ON
       revocations.kind = '{RevocationKind.ARTIFACT.value}' AND revocations.subject = chain.jti
    OR revocations.kind = '{RevocationKind.ARTIFACT.value}'
       AND revocations.subject = chain.parent_jti
    OR revocations.kind = '{RevocationKind.KEY.value}' AND revocations.subject = chain.kid
    OR revocations.kind = '{RevocationKind.AK.value}' AND revocations.subject = chain.ak_name
    OR revocations.kind = '{RevocationKind.HOST.value}' AND revocations.subject = chain.host
    OR revocations.kind = '{RevocationKind.APPROVAL.value}'
       AND revocations.subject = chain.approval
ORDER BY chain.level, CASE revocations.kind {_RANK} ELSE 9 END, revocations.id
LIMIT 1"""  # noqa: S608 - constants only

Ranked = tuple[int, Revocation]
"""A revocation with its row id: (priority, id) orders the most specific, then oldest, first."""


def record(tx: Transaction, kind: RevocationKind, subject: str, reason: str, now: int,
           cascaded_from: str | None = None) -> None:
    """Record a revocation unless one exists already: the first reason and time stand.

    A new revocation is an event on the stream (attest.store.events), written with it:
    one for each host it touches (attest.store.eventhosts).
    """
    if find(tx, [(kind, subject)]) is not None:
        return
    try:
        # A savepoint, so that losing a race to a concurrent revoker (unique violation)
        # leaves the surrounding transaction usable on PostgreSQL too.
        with tx.savepoint():
            tx.execute(_INSERT, {"kind": kind.value, "subject": subject, "reason": reason,
                                 "revoked_at": now, "cascaded_from": cascaded_from})
            # One event per host it touches, listing what it cuts there (the rule:
            # attest.store.eventhosts); one with no host when it touches none known.
            for host, jtis in eventhosts.touched(tx, kind, subject):
                data: dict[str, object] = {"kind": kind.value, "subject": subject,
                                           "reason": reason[:1024],
                                           "cascaded_from": cascaded_from}
                if host is not None:
                    data["jtis"] = jtis
                events.record_event(tx, events.REVOCATION, f"{kind.value}:{subject}", data,
                                    now=now, host=host)
    except Conflict:
        if find(tx, [(kind, subject)]) is None:
            raise


def matching(tx: Transaction, wanted: Sequence[tuple[RevocationKind, str | None]]
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
        for row in tx.all(_MATCHING[slots], params):
            found[row.id] = _revocation(row)
    if len(found) < 2:
        return list(found.items())
    return sorted(found.items(), key=lambda item: (PRIORITY[item[1].kind], item[0]))


def best(found: Iterable[Ranked], wanted: Iterable[tuple[RevocationKind, str | None]]
         ) -> Revocation | None:
    """The first of ``found`` (as :func:`matching` orders them) among ``wanted`` pairs."""
    pairs = {(kind, subject) for kind, subject in wanted if subject is not None}
    return next((rev for _, rev in found if (rev.kind, rev.subject) in pairs), None)


def find(tx: Transaction, wanted: Iterable[tuple[RevocationKind, str]]) -> Revocation | None:
    """The most specific revocation among ``(kind, subject)`` pairs, or None."""
    pairs: list[tuple[RevocationKind, str | None]] = list(wanted)
    if not pairs:
        return None
    found = matching(tx, pairs)
    return found[0][1] if found else None


def descendants(tx: Transaction, jti: str) -> list[str]:
    """Every artifact descending from ``jti`` (children, grandchildren, ...), nearest first."""
    rows = tx.all(_DESCENDANTS, {"root": jti, "max_walk": MAX_WALK})
    return [row.jti for row in rows if row.jti != jti]


def in_ancestry(tx: Transaction, jti: str) -> Revocation | None:
    """The nearest revocation covering ``jti`` or an ancestor the store knows.

    For the artifact and each stored ancestor, a revocation of its jti, its signing
    key, its AK, its host or the approval its key signed under counts: whatever an
    artifact rests on, its descendants rest on too. A jti the store has not seen is
    checked by its own revocation only.
    """
    direct = find(tx, [(RevocationKind.ARTIFACT, jti)])
    if direct is not None:
        return direct
    return in_chain(tx, jti)


def in_chain(tx: Transaction, jti: str) -> Revocation | None:
    """:func:`in_ancestry` without the lookup of ``jti``'s own revocation (made already)."""
    row = tx.first(_CHAIN, {"start": jti, "max_walk": MAX_WALK})
    return None if row is None else _revocation(row)


def _revocation(row: Row) -> Revocation:  # a row with the revocation columns
    return Revocation(kind=RevocationKind(row.kind), subject=row.subject, reason=row.reason,
                      revoked_at=row.revoked_at, cascaded_from=row.cascaded_from)
