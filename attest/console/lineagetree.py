"""What the lineage page shows, read from the store: an artifact's line up to its root,
its descendants as a tree, each node's state; and what revoking it would cut.

Every read is bounded: the line by :data:`MAX_ANCESTORS`, the tree by
:data:`MAX_NODES`, :data:`MAX_CHILDREN` a node and :data:`MAX_LEVELS` below the viewed
artifact, the cut's listing by :data:`MAX_CUT`; what is left out is counted, so a page
says "N more not shown" instead of silently showing less. Functions here block: the
page calls them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attest.store import Store
from attest.store import revocations as revs
from attest.store.db import Row, Transaction
from attest.store.records import Revocation, RevocationKind

ACCEPTED = "accepted"
EXPIRED = "expired"
REVOKED = "revoked"
STATES = (ACCEPTED, EXPIRED, REVOKED)

# A policy's delegation depth is a handful; a line longer than this is shown cut.
MAX_ANCESTORS = 16
MAX_LEVELS = 6
MAX_NODES = 100
MAX_CHILDREN = 25
MAX_CUT = 200

_COLUMNS = "jti, parent_jti, host, subject, exp, accepted_at"
_NODE = f"SELECT {_COLUMNS} FROM artifacts WHERE jti = :jti"  # noqa: S608 - constants
_CHILDREN = (f"SELECT {_COLUMNS} FROM artifacts WHERE parent_jti = :parent "  # noqa: S608
             "ORDER BY accepted_at, jti LIMIT :limit")
_COUNT = "SELECT count(*) AS n FROM artifacts WHERE parent_jti = :parent"


@dataclass(frozen=True)
class Node:
    jti: str
    parent_jti: str | None
    host: str
    subject: str
    exp: int
    accepted_at: int
    state: str  # one of STATES
    # What revoked it (its own revocation, an ancestor's, its key's, AK's, host's...).
    revocation: Revocation | None


@dataclass
class Branch:
    node: Node
    children: list[Branch] = field(default_factory=list)
    hidden: int = 0  # children (and so their subtrees) not shown: a bound was reached


@dataclass(frozen=True)
class Lineage:
    ancestors: list[Node]  # root first; the viewed artifact's parent last
    # The topmost ancestor's parent when the store does not hold it (judged, never
    # stored here), or None.
    missing_parent: str | None
    older_hidden: bool  # the line goes on above MAX_ANCESTORS
    viewed: Branch


@dataclass(frozen=True)
class Cut:
    """What revoking ``jti`` would revoke: it and every descendant, as
    attest.store.Store.revoke_artifact computes it (revocations.descendants)."""

    node: Node
    total: int
    shown: list[str]  # the first MAX_CUT of the cut, the artifact first, nearest first
    # Of ``shown``, those with an artifact revocation already on record: revoking again
    # keeps that one's reason and time.
    already: frozenset[str]


def _node(tx: Transaction, row: Row, now: int) -> Node:
    revocation = revs.in_ancestry(tx, row.jti)
    if revocation is not None:
        state = REVOKED
    elif row.exp <= now:
        state = EXPIRED
    else:
        state = ACCEPTED
    return Node(jti=row.jti, parent_jti=row.parent_jti, host=row.host, subject=row.subject,
                exp=row.exp, accepted_at=row.accepted_at, state=state, revocation=revocation)


def lineage(store: Store, jti: str, now: int) -> Lineage | None:
    """The line and tree of the accepted artifact ``jti`` at ``now``; None when the store
    holds no artifact under that jti."""
    with store.read() as tx:
        row = tx.first(_NODE, {"jti": jti})
        if row is None:
            return None
        viewed = Branch(_node(tx, row, now))
        ancestors: list[Node] = []
        seen = {row.jti}
        parent = row.parent_jti
        missing = None
        # Upwards one indexed read a generation; ``seen`` stops a cycle a corrupted
        # table could hold.
        while parent is not None and parent not in seen and len(ancestors) < MAX_ANCESTORS:
            above = tx.first(_NODE, {"jti": parent})
            if above is None:
                missing = parent
                break
            seen.add(parent)
            ancestors.append(_node(tx, above, now))
            parent = above.parent_jti
        older = parent is not None and missing is None and len(ancestors) == MAX_ANCESTORS
        _grow(tx, viewed, seen, now)
        return Lineage(ancestors[::-1], missing, older, viewed)


def _grow(tx: Transaction, top: Branch, seen: set[str], now: int) -> None:
    """Fill ``top``'s subtree breadth first within the bounds, counting what is left."""
    budget = MAX_NODES
    level = [top]
    for depth in range(MAX_LEVELS + 1):
        below: list[Branch] = []
        for branch in level:
            jti = branch.node.jti
            limit = min(MAX_CHILDREN, budget) if depth < MAX_LEVELS else 0
            rows = tx.all(_CHILDREN, {"parent": jti, "limit": limit + 1}) if limit else []
            for child in rows[:limit]:
                if child.jti in seen:  # a cycle in a corrupted table: drawn once
                    continue
                seen.add(child.jti)
                grown = Branch(_node(tx, child, now))
                branch.children.append(grown)
                below.append(grown)
            budget -= len(branch.children)
            if limit == 0 or len(rows) > limit:  # some not read: count them, one read
                counted = tx.first(_COUNT, {"parent": jti})
                held = 0 if counted is None else int(counted.n)
                branch.hidden = max(0, held - len(branch.children))
        if not below:
            return
        level = below


def cut(store: Store, jti: str, now: int) -> Cut | None:
    """What revoking the accepted artifact ``jti`` would cut; None when not stored."""
    with store.read() as tx:
        row = tx.first(_NODE, {"jti": jti})
        if row is None:
            return None
        every = [jti, *revs.descendants(tx, jti)]
        shown = every[:MAX_CUT]
        found = revs.matching(tx, [(RevocationKind.ARTIFACT, j) for j in shown])
        already = frozenset(rev.subject for _, rev in found)
        return Cut(_node(tx, row, now), len(every), shown, already)
