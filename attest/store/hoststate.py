"""Each host's last decision, for the service's hosts view (``GET /v1/hosts``).

:func:`record` runs inside the commit of a group of decisions (attest.verify.batch),
one statement per host of the group, its last decision there: an acceptance upserts
the host's row (``INSERT ... ON CONFLICT``, the same text on SQLite and PostgreSQL, so
two replicas racing on a new host never fail a transaction); a denial only updates a
row an acceptance made. A denied artifact's host is its own claim, not authenticated:
it can make a known host's last decision a denial (what the host's view then says,
with its reasons), never add a host or move its last acceptance.

:func:`hosts` reads the view: every host enrolled or seen accepted, with its state:
``revoked`` (its host id is revoked), ``stale`` (no acceptance within ``stale_after``
seconds, or none ever), ``untrusted`` (its last decision was a denial, with its
reasons), else ``trusted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attest.decision import Decision
from attest.store.db import Transaction
from attest.store.schema import MAX_HOST, MAX_HOST_REASONS
from attest.store.store import Store

_ACCEPTED = (
    "INSERT INTO host_decisions (host, accepted, reasons, decided_at, audit_index, "
    "accepted_at, accepted_index) VALUES (:host, 1, '', :now, :idx, :now, :idx) "
    "ON CONFLICT (host) DO UPDATE SET accepted = 1, reasons = '', "
    "decided_at = excluded.decided_at, audit_index = excluded.audit_index, "
    "accepted_at = excluded.accepted_at, accepted_index = excluded.accepted_index")
_DENIED = ("UPDATE host_decisions SET accepted = 0, reasons = :reasons, decided_at = :now, "
           "audit_index = :idx WHERE host = :host")
# Enrolled hosts and hosts seen accepted (a policy may trust an AK it never enrolled),
# each with its last decision and whether its host id is revoked. Each arm of the union
# reads its own index from the cursor, at most a page (the page's hosts are among the
# first :limit of each arm): a page reads about :limit rows of each table, not the whole
# of both (which the planners do not push the cursor and the limit into).
_PAGE = (
    "SELECT names.host, d.accepted, d.reasons, d.decided_at, d.audit_index, "
    "d.accepted_at, d.accepted_index, h.last_enrolled_at, r.reason AS revoked "
    "FROM (SELECT host FROM (SELECT host FROM hosts WHERE host > :after "
    "ORDER BY host LIMIT :limit) AS a UNION SELECT host FROM (SELECT host FROM "
    "host_decisions WHERE host > :after ORDER BY host LIMIT :limit) AS b) AS names "
    "LEFT JOIN host_decisions d ON d.host = names.host "
    "LEFT JOIN hosts h ON h.host = names.host "
    "LEFT JOIN revocations r ON r.kind = 'host' AND r.subject = names.host "
    "ORDER BY names.host LIMIT :limit")

# One host of the view (the console's host page): the same columns, by id.
_ONE = (
    "SELECT names.host, d.accepted, d.reasons, d.decided_at, d.audit_index, "
    "d.accepted_at, d.accepted_index, h.last_enrolled_at, r.reason AS revoked "
    "FROM (SELECT host FROM hosts WHERE host = :host "
    "UNION SELECT host FROM host_decisions WHERE host = :host) AS names "
    "LEFT JOIN host_decisions d ON d.host = names.host "
    "LEFT JOIN hosts h ON h.host = names.host "
    "LEFT JOIN revocations r ON r.kind = 'host' AND r.subject = names.host")

TRUSTED, UNTRUSTED, STALE, REVOKED = "trusted", "untrusted", "stale", "revoked"


def record(tx: Transaction, decisions: Sequence[Decision], indexes: Sequence[int | None],
           now: int) -> None:
    """Each host's last decision among ``decisions`` (with their audit ``indexes``): its
    last acceptance upserted, then its last decision when that is a later denial."""
    accepted: dict[str, int | None] = {}
    last: dict[str, tuple[Decision, int | None]] = {}
    for decision, index in zip(decisions, indexes, strict=True):
        host = decision.host
        if host is None or not storable(host):
            continue
        if decision.accepted:
            accepted[host] = index
        last[host] = (decision, index)  # a later one replaces it
    # In host order: two groups on two replicas lock the rows in one order (they also
    # hold the audit log's state row first, which serializes them already).
    for host in sorted(last):
        if host in accepted:
            tx.execute(_ACCEPTED, {"host": host, "now": now, "idx": accepted[host]})
        decision, index = last[host]
        if not decision.accepted:
            reasons = ",".join(decision.reasons)[:MAX_HOST_REASONS]
            tx.execute(_DENIED, {"host": host, "now": now, "idx": index,
                                 "reasons": reasons})


def storable(host: str) -> bool:
    """Whether ``host`` can be a row's key: a denied artifact's host is anyone's text, and
    one the database refuses (NUL on PostgreSQL, a lone surrogate anywhere) would fail
    the whole group's commit, the other members' acceptances with it. Such a host is
    never an enrolled one (attest.store.store._host_id: visible characters only)."""
    return 0 < len(host) <= MAX_HOST and host.isprintable()


@dataclass(frozen=True)
class HostView:
    host: str
    state: str
    reasons: tuple[str, ...]
    last_decision: dict[str, Any] | None
    last_accepted_at: int | None
    last_enrolled_at: int | None
    revocation: str | None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "state": self.state, "reasons": list(self.reasons),
                "last_decision": self.last_decision,
                "last_quote_at": self.last_accepted_at,
                "last_enrolled_at": self.last_enrolled_at, "revocation": self.revocation}


def hosts(store: Store, *, now: int, stale_after: int, after: str = "",
          limit: int = 100) -> list[HostView]:
    """Up to ``limit`` hosts whose id sorts after ``after``, in order (a page)."""
    with store.read() as tx:
        rows = tx.all(_PAGE, {"after": after, "limit": limit})
    return [_view(row, now, stale_after) for row in rows]


def host(store: Store, host: str, *, now: int, stale_after: int) -> HostView | None:
    """``host``'s row of the view, or None when it was never enrolled nor accepted."""
    with store.read() as tx:
        row = tx.first(_ONE, {"host": host})
    return None if row is None else _view(row, now, stale_after)


def _view(row: Any, now: int, stale_after: int) -> HostView:
    last = None
    reasons: tuple[str, ...] = ()
    if row.decided_at is not None:
        reasons = tuple(r for r in (row.reasons or "").split(",") if r)
        last = {"accepted": bool(row.accepted), "reasons": list(reasons),
                "time": row.decided_at, "audit_index": row.audit_index}
    if row.revoked is not None:
        state = REVOKED
    elif row.accepted_at is None or now - row.accepted_at > stale_after:
        state = STALE
    elif not row.accepted:
        state = UNTRUSTED
    else:
        state = TRUSTED
    return HostView(row.host, state, reasons if state == UNTRUSTED else (), last,
                    row.accepted_at, row.last_enrolled_at, row.revoked)
