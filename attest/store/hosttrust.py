"""Each host's trust state from its reports: continuous attestation (attest.server.reports).

A host is ``trusted`` after an accepted report, ``untrusted`` (with the reasons) after a
report whose quote verified under its enrolled AK but whose measurements the policy does
not know, and ``stale`` when its last accepted report is older than the policy's
``freshness.report_max_age`` (or it never had one). Stale is derived from the time at
each read: a host that stops reporting is denied as stale at once, whoever writes.
:func:`sweep_stale` (each replica runs it every few seconds: attest.server.reports)
then stores it and logs the change.

Only an authenticated report moves the state (:data:`MEASUREMENT_REASONS`): a denial for
a forged signature, a replayed nonce or an unknown AK names a host by anyone's claim and
changes nothing, or anyone could make any host untrusted. Every change of the stored
state is an audit entry (``host_state``) and an event (``host_state``, streamed by
GET /v1/events and the webhooks: attest.store.events), both written in the transaction
that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from attest import timetext
from attest.audit.entry import Entry, EntryKind, Outcome
from attest.audit.log import AuditLog
from attest.decision import Decision, Denial
from attest.reasons import Reason
from attest.store import events, hostreports
from attest.store.db import Transaction
from attest.store.schema import MAX_HOST_REASONS
from attest.store.store import Store

TRUSTED, UNTRUSTED, STALE = "trusted", "untrusted", "stale"

# A report denied for these reasons alone was measured by the host's own TPM: every
# check of who signed it (AK, certification, JWS signature, quote, binding, nonce,
# times) passed, since any of those failing adds its own reason. The evidence is the
# host's, and it says the host runs something the policy does not know.
MEASUREMENT_REASONS = frozenset({Reason.REFERENCE_VALUE_MISMATCH, Reason.EVENTLOG_MISMATCH})

_ROW = ("SELECT host, state, reasons, changed_at, reported_at, audit_index, report_clock "
        "FROM host_trust WHERE host = :host")
_ENSURE = ("INSERT INTO host_trust (host, state, reasons, changed_at, reported_at, "
           "audit_index) VALUES (:host, :state, '', :now, NULL, NULL) "
           "ON CONFLICT (host) DO NOTHING")
# The common report: an accepted one of a host that stays trusted moves only the time of
# its last report (conditional: trusted, and a quote newer than the last that moved it).
_REPORTED = ("UPDATE host_trust SET reported_at = :now, report_clock = :clock "
             "WHERE host = :host AND state = 'trusted' "
             "AND (report_clock IS NULL OR report_clock < :clock)")
_SET = ("UPDATE host_trust SET state = :state, reasons = :reasons, changed_at = :changed, "
        "reported_at = :reported, audit_index = :idx, report_clock = :clock "
        "WHERE host = :host")


@dataclass(frozen=True)
class TrustView:
    host: str
    state: str
    reasons: tuple[str, ...]
    changed_at: int | None
    reported_at: int | None
    audit_index: int | None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "state": self.state, "reasons": list(self.reasons),
                "changed_at": self.changed_at, "last_report_at": self.reported_at,
                "audit_index": self.audit_index}

    def denial(self) -> Denial | None:
        """Why an artifact of this host is denied now, or None when it is trusted."""
        if self.state == UNTRUSTED:
            return Denial(Reason.HOST_UNTRUSTED, "the host's last report showed "
                          + (", ".join(self.reasons) or "an unexpected measurement"))
        if self.state == STALE:
            if self.reported_at is None:
                return Denial(Reason.HOST_STALE, "the host has no accepted report")
            return Denial(Reason.HOST_STALE,
                          "the host's last accepted report is from "
                          f"{timetext.iso(self.reported_at)}")
        return None


def view(store: Store, host: str, *, now: int, max_age: int) -> TrustView:
    """``host``'s state at ``now`` (stale past ``max_age`` seconds since its last report)."""
    with store.read() as tx:
        row = tx.first(_ROW, {"host": host})
    return _view(host, row, now, max_age)


def _view(host: str, row: Any, now: int, max_age: int) -> TrustView:
    if row is None:
        return TrustView(host, STALE, (), None, None, None)
    reasons = tuple(r for r in (row.reasons or "").split(",") if r)
    if row.state == STALE:  # stored by the sweep: stays until a report is accepted
        return TrustView(host, STALE, (), row.changed_at, row.reported_at, row.audit_index)
    if row.state == UNTRUSTED:
        # Untrusted stays untrusted however old: only an accepted report clears it.
        return TrustView(host, UNTRUSTED, reasons, row.changed_at, row.reported_at,
                         row.audit_index)
    return as_of(TrustView(host, TRUSTED, (), row.changed_at, row.reported_at,
                           row.audit_index), now, max_age)


def as_of(view: TrustView, now: int, max_age: int) -> TrustView:
    """``view`` at ``now``: a trusted host whose last accepted report is older than
    ``max_age`` seconds (or that has none) is stale."""
    if view.state == TRUSTED and (view.reported_at is None
                                  or now - view.reported_at > max_age):
        return replace(view, state=STALE)
    return view


def moves(decision: Decision) -> str | None:
    """The state a report's ``decision`` moves its host to, or None when it moves none."""
    if decision.host is None:
        return None
    if decision.accepted:
        return TRUSTED
    codes = {d.reason for d in decision.denials}
    if codes and codes <= MEASUREMENT_REASONS:
        return UNTRUSTED
    return None


@dataclass
class ReportMark:
    """Set by :func:`record_unchanged` in the transaction of a report's acceptance (the
    verifier's group commit): the host's state after it, when nothing but the time moved.
    Read only once that transaction has committed (the decision accepted).
    ``quoted_after``: when the report's challenge was issued; the time recorded is no
    later than that (attest.server.reports)."""

    view: TrustView | None = None
    quoted_after: int | None = None


def record_unchanged(tx: Transaction, host: str, *, now: int, clock: int) -> TrustView | None:
    """An accepted report (quoted at TPM ``clock``) of a host stored as trusted, written in
    ``tx``, the transaction that commits the acceptance: only its time moves, so no audit
    entry and no event, and no write transaction of its own. None when the report would
    change the stored state (a new host, untrusted or stale, or a quote no newer than the
    last one that moved it): :func:`record_report` then decides, after the commit."""
    # PostgreSQL re-checks the condition on the row once its lock is granted (read
    # committed), so a sweep to stale or an older quote committed meanwhile wins.
    if tx.execute(_REPORTED, {"host": host, "now": now, "clock": clock}) != 1:
        return None
    row = tx.first(_ROW, {"host": host})
    if row is None:
        return None
    return TrustView(host, TRUSTED, (), row.changed_at, now, row.audit_index)


def record_report(store: Store, log: AuditLog | None, decision: Decision, now: int,
                  verifier_id: str | None, *, clock: int, quoted_after: int | None = None,
                  runtime: hostreports.ReportLog | None = None) -> bool:
    """Move the host of a report's ``decision`` (its quote made at TPM ``clock``) to the
    state it says (:func:`moves`), the change audited in the same transaction, unless an
    earlier report moved it with a quote made no earlier; whether the state changed.

    ``quoted_after``: when the report's challenge was issued, all its freshness (a report
    quoted on a long-lived challenge and sent later is as old as its challenge); the
    accepted report counts from then, never from ``now``.

    ``runtime``: the report's runtime log, kept with a change (attest.store.hostreports)
    for the console to show which reference value allowed each measurement."""
    target = moves(decision)
    host = decision.host
    if target is None or host is None:
        return False
    reasons = "" if target == TRUSTED else ",".join(
        sorted({d.reason.value for d in decision.denials}))[:MAX_HOST_REASONS]
    with store.write() as tx:
        # A new row is a change: the host starts from "never reported" (stale).
        new = tx.execute(_ENSURE, {"host": host, "state": TRUSTED, "now": now}) == 1
        row = _locked(tx, host)
        if row.report_clock is not None and clock <= row.report_clock:
            return False  # quoted before the report that last moved it
        fresh = now if quoted_after is None else min(now, quoted_after)
        reported = fresh if target == TRUSTED else row.reported_at
        changed = new or row.state != target or (row.reasons or "") != reasons
        index = row.audit_index
        changed_at = row.changed_at
        if changed:
            changed_at = now
            if log is not None:
                index = log.append(tx, Entry(
                    kind=EntryKind.HOST_STATE,
                    decision=Outcome.TRUSTED if target == TRUSTED else Outcome.UNTRUSTED,
                    time=now, verifier=verifier_id, host=host,
                    reasons=tuple(r for r in reasons.split(",") if r)))
        tx.execute(_SET, {"host": host, "state": target, "reasons": reasons,
                          "changed": changed_at, "reported": reported, "idx": index,
                          "clock": clock})
        if changed:
            _event(tx, host, target, reasons.split(",") if reasons else [], index, now)
            if runtime is not None:
                hostreports.record(tx, host, runtime, accepted=target == TRUSTED,
                                   reasons=reasons, now=now, audit_index=index)
    return changed


def _event(tx: Transaction, host: str, state: str, reasons: list[str], index: int | None,
           now: int) -> None:
    events.record_event(tx, events.HOST_STATE, host,
                        {"state": state, "reasons": reasons, "audit_index": index}, now=now,
                        host=host)


def _locked(tx: Transaction, host: str) -> Any:
    # PostgreSQL's read committed: lock the row so that two replicas taking two reports
    # of one host do not both log one change. SQLite's write lock is held already.
    sql = _ROW + (" FOR UPDATE" if tx.dialect == "postgresql" else "")
    return tx.first(sql, {"host": host})


_OVERDUE = ("SELECT host FROM host_trust WHERE state = 'trusted' AND reported_at < :before "
            "ORDER BY host LIMIT :limit")
_STALE = ("UPDATE host_trust SET state = 'stale', changed_at = :now, audit_index = :idx "
          "WHERE host = :host AND state = 'trusted'")


def sweep_stale(store: Store, log: AuditLog | None, *, now: int, max_age: int,
                verifier_id: str | None, limit: int = 500) -> list[str]:
    """Store as stale, each with its audit entry, up to ``limit`` trusted hosts whose last
    accepted report is older than ``max_age``; their ids. Several replicas sweeping at
    once log each change once: the update is conditional on the row still trusted, under
    the row's lock (PostgreSQL) or the write lock (SQLite)."""
    swept: list[str] = []
    with store.write() as tx:
        sql = _OVERDUE + (" FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else "")
        for row in tx.all(sql, {"before": now - max_age, "limit": limit}):
            index = None
            if log is not None:
                index = log.append(tx, Entry(kind=EntryKind.HOST_STATE,
                                             decision=Outcome.STALE, time=now,
                                             verifier=verifier_id, host=row.host))
            tx.execute(_STALE, {"host": row.host, "now": now, "idx": index})
            _event(tx, row.host, STALE, [], index, now)
            swept.append(row.host)
    return swept
