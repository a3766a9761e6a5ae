"""Batch acceptance: the decisions of many verifications committed in ONE write transaction.

A durable commit costs an fsync on SQLite (and a round trip and a WAL flush on a server),
so verifications that each committed alone would queue behind each other's commits.
Instead the verifier hands its appraised members to :func:`commit` in groups
(concurrent ``verify`` calls through a :class:`attest.audit.groupcommit.GroupCommit`,
or the members of ``verify_batch``). In the one transaction, in order:

- the revocation set checked against its seal, once, its row lock held to the commit;
- each acceptance runs in a SAVEPOINT of its own: the store's acceptance
  (Store.record_acceptance: nonce consumed, jti stored, clock, epoch, approval, the
  runtime log's appraised prefix with its seal), the check of its line against the
  revocations the set holds, and the artifact's seal. A member the store refuses
  (replayed jti, nonce used, revoked meanwhile, clock rolled back) or whose seals
  can't be written rolls back alone and is denied with its reason;
- then every member's entry (acceptances and denials, in order) in one append: the
  log's size reserved and its tree extended once for the group.

Single use stays atomic: the store settles it inside the transaction (a primary key, a
conditional UPDATE), so of two members, or two groups, with one jti or one nonce exactly
one is accepted. A denial burns nothing: its savepoint is gone before the commit. If the
transaction itself fails (its COMMIT, the disk, the group's append, a statement that
rolled it all back), no member was committed: every acceptance becomes an
``audit_unavailable`` denial, nothing was consumed, and a later retry of the same
artifact can still be accepted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from attest.audit.hooks import decision_entry
from attest.audit.log import AuditLog
from attest.audit.revseals import Held
from attest.decision import Decision, Denial
from attest.errors import AttestError, AuditUnavailable, StoreUnavailable
from attest.reasons import Reason
from attest.store import Store, hoststate, hosttrust
from attest.store.db import Transaction
from attest.verify.appraisal import Acceptance

Result = TypeVar("Result")


@dataclass(frozen=True)
class Member:
    """One verification waiting for its commit: an acceptance to commit (``acceptance``
    set, ``decision`` the acceptance it becomes) or a denial to log."""

    decision: Decision
    now: int
    artifact: str | None = None  # the artifact's identity (jws.identity), for its entry
    acceptance: Acceptance | None = None
    # A host's report (POST /v1/reports): its acceptance also records the report's time
    # when its host stays trusted (attest.store.hosttrust.record_unchanged), in the
    # member's savepoint, so the common report costs no second write transaction.
    report: hosttrust.ReportMark | None = None


class _Unlogged(Exception):
    """The audit log could not take an acceptance: its savepoint rolls back."""


def commit(store: Store, log: AuditLog | None, members: Sequence[Member], *,
           verifier_id: str | None = None, track_hosts: bool = False) -> list[Decision]:
    """Each member's final decision, in order, once the one transaction holding them all
    has committed (with its audit index when audited). Unaudited (``log`` None), only the
    acceptances are written, and a denial is returned as it is. ``track_hosts``: each
    host's last decision is recorded in the same transaction (attest.store.hoststate:
    one statement per host of the group), for the service's hosts view."""
    if not members or (log is None and not any(m.acceptance for m in members)):
        return [m.decision for m in members]
    try:
        with store.write() as tx:
            held: Held | None = None
            if log is not None and any(m.acceptance for m in members):
                # The revocation set's row first, before any member's rows (nonce, clock,
                # epoch), as every writer that takes both does: on a server, groups of
                # replicas running at once would otherwise lock those rows in opposite
                # orders and deadlock (revocations take it first too). Held to the commit:
                # no revocation commits before this group does, so the set checked here
                # once is the one every member is accepted against.
                held = log.check_revocation_set(tx)
            decided = [_member(store, tx, log, held, m) for m in members]
            if log is None:
                return decided
            # Every decision's entry, in the members' order, in one append: the log is
            # reserved and its tree extended once for the group. If that fails, the
            # transaction rolls back whole: no acceptance commits unlogged.
            indexes = log.append_many(tx, [
                decision_entry(d, time=log.now(), verifier_id=verifier_id, artifact=m.artifact)
                for d, m in zip(decided, members, strict=True)])
            if track_hosts:
                hoststate.record(tx, decided, indexes, members[-1].now)
    except Exception as exc:  # noqa: BLE001 - the group failed as a whole: each member says so
        return _failed(log, members, exc, verifier_id)
    return [dataclasses.replace(d, audit_index=i) for d, i in zip(decided, indexes, strict=True)]


def _member(store: Store, tx: Transaction, log: AuditLog | None, held: Held | None,
            member: Member) -> Decision:
    """The member's decision, its acceptance written in ``tx`` (its entry comes after)."""
    acceptance = member.acceptance
    if acceptance is None:
        return member.decision
    try:
        _alone(tx, lambda: _accept(store, tx, log, held, acceptance, member.now,
                                   member.report, member.decision.host))
    except _MemberFailed as failed:
        # Its savepoint is undone: nothing of this member was written or consumed.
        return _refused(member.decision, _denial(failed.cause))
    return member.decision


def _accept(store: Store, tx: Transaction, log: AuditLog | None, held: Held | None,
            acceptance: Acceptance, now: int, report: hosttrust.ReportMark | None = None,
            host: str | None = None) -> None:
    record = acceptance.record
    prefix = acceptance.log_prefix
    if prefix is not None and log is not None:
        try:
            # The audited verifier uses no prefix row without this seal (a database
            # writer's row is a log it never appraised).
            prefix = log.sealed_prefix(prefix)
        except Exception as exc:
            raise _Unlogged(f"{type(exc).__name__}: {exc}") from exc
    store.record_acceptance(tx, record, nonce=acceptance.nonce,
                            single_use=acceptance.single_use, clock=acceptance.clock,
                            now=now, approval=acceptance.approval,
                            log_prefix=prefix, log_whole=acceptance.log_whole)
    if log is None:
        return
    try:
        if held is None:  # commit() checks the set whenever a member is an acceptance
            raise AuditUnavailable("the revocation set was not checked for this group")
        # Here, where the store has just looked the revocations up: its "not revoked"
        # must hold against the set this verifier sealed (checked once for the group,
        # under the lock the group holds), so a revocation row deleted from the table
        # still denies. Then the seal children of this artifact will rest on
        # (attest.audit.seals).
        log.check_revoked(tx, held, record.jti, record)
        log.seal_artifact(tx, record)
    except Exception as exc:
        # Whatever failed, the decision can't stand as logged: audit_unavailable.
        raise _Unlogged(f"{type(exc).__name__}: {exc}") from exc
    if report is not None and host is not None:
        _report_time(tx, report, host, now, acceptance.clock.clock)


def _report_time(tx: Transaction, report: hosttrust.ReportMark, host: str, now: int,
                 clock: int) -> None:
    """The report's time, with its acceptance, in a savepoint of its own: if it can't be
    written, the acceptance stands without it and the report's move is recorded after
    the commit, as for a change (attest.server.reports), which says what fails."""
    # As fresh as its challenge, never as its arrival (a hoarded challenge's report is old).
    fresh = now if report.quoted_after is None else min(now, report.quoted_after)
    try:
        report.view = _alone(tx, lambda: hosttrust.record_unchanged(tx, host, now=fresh,
                                                                    clock=clock))
    except _MemberFailed as failed:
        _log.warning("attest: a report's time was not written with its acceptance (%s); "
                     "recording it after the commit", said(failed.cause))


_log = logging.getLogger(__name__)
UNAVAILABLE = "the verifier's store is unavailable"


def said(exc: BaseException) -> str:
    """What a denial, which goes to the client, says of ``exc``. The store out of reach
    (StoreUnavailable anywhere in its causes: the audit log wraps it) is named, never
    located: its message holds the database URL or path and the driver's words, the
    operator's to read in the verifier's log (written here), not the client's."""
    cause: BaseException | None = exc
    for _ in range(8):  # causes are a chain; bounded all the same
        if cause is None:
            break
        if isinstance(cause, StoreUnavailable):
            _log.warning("attest: a decision could not be committed or logged: %s: %s",
                         type(exc).__name__, exc)
            return UNAVAILABLE
        cause = cause.__cause__
    message = exc.message if isinstance(exc, AttestError) else None
    return message or f"{type(exc).__name__}: {exc}"


def _denial(exc: Exception) -> Denial:
    """Why a member's acceptance was refused inside the group."""
    if isinstance(exc, _Unlogged):
        return Denial(Reason.AUDIT_UNAVAILABLE,
                      f"the decision could not be logged: {said(exc.__cause__ or exc)}")
    if isinstance(exc, AttestError):  # the store's refusals (replayed, nonce_reused...)
        return Denial(exc.reason or Reason.INTERNAL_ERROR, said(exc))
    return Denial(Reason.INTERNAL_ERROR, said(exc))


class _MemberFailed(Exception):
    """A member's work raised, and its savepoint was undone: the group goes on."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _alone(tx: Transaction, work: Callable[[], Result]) -> Result:
    """``work()`` in a savepoint of its own. If it raises, :class:`_MemberFailed` once the
    savepoint is undone; if undoing (or releasing) it fails, that failure itself: the
    transaction is in doubt (SQLite may have rolled it all back), and the group fails."""
    raised: list[Exception] = []
    try:
        with tx.savepoint():
            try:
                return work()
            except Exception as exc:
                raised.append(exc)
                raise
    except Exception as exc:
        if raised and exc is raised[0]:
            raise _MemberFailed(exc) from exc
        raise


def _failed(log: AuditLog | None, members: Sequence[Member], exc: Exception,
            verifier_id: str | None) -> list[Decision]:
    """The decisions of a group whose transaction did not commit: nothing of it stands.
    Each acceptance is denied (audit_unavailable); then every denial is logged in one more
    transaction, or carries a second reason if that fails too."""
    why = (f"the decision could not be logged: {said(exc)}"
           if isinstance(exc, AuditUnavailable)
           else f"the decisions could not be committed: {said(exc)}")
    denied = [m.decision if m.acceptance is None else
              _refused(m.decision, Denial(Reason.AUDIT_UNAVAILABLE, why)) for m in members]
    if log is None:
        return denied
    try:
        indexes = log.record_many([
            decision_entry(d, time=log.now(), verifier_id=verifier_id, artifact=m.artifact)
            for d, m in zip(denied, members, strict=True)])
    except Exception as again:  # noqa: BLE001 - unlogged denials are still denials
        return [_unlogged_denial(d, again) for d in denied]
    return [dataclasses.replace(d, audit_index=i)
            for d, i in zip(denied, indexes, strict=True)]


def _unlogged_denial(decision: Decision, exc: Exception) -> Decision:
    missing = Denial(Reason.AUDIT_UNAVAILABLE,
                     f"the denial could not be logged either: {said(exc)}")
    return dataclasses.replace(decision, denials=(*decision.denials, missing))


def _refused(decision: Decision, denial: Denial) -> Decision:
    """The denial of an artifact whose appraisal passed but whose commit was refused."""
    return Decision(False, (denial,), jti=decision.jti, subject=decision.subject,
                    host=decision.host)
