"""The verifier: the one entry point, an audited shell around the pure appraisal.

``Verifier(policy, store, log).verify(raw)`` parses the artifact, reads the store
snapshot its appraisal needs (attest.verify.appraisal.snapshot_query) and the verdicts
on that snapshot's seals, appraises (attest.verify.appraisal.appraise: no I/O), records
what the appraisal saw (a TPM reset), then, for an acceptance, commits in ONE write
transaction the acceptance (nonce consumed, jti stored, clock and boot epoch, approval
mark: Store.record_acceptance), the check of the revocations' seals, the audit entry
and the artifact's seal; for a denial, appends its entry. An acceptance that can't be
logged rolls back (audit_unavailable); a denial that can't be logged says so with a
second reason. Anything that raises inside is a denial (internal_error), never an
acceptance.

Audited, the store is trusted only as this verifier sealed it: an enrollment or a
parent's row without the log key's seal does not count (attest.audit.seals), and an
acceptance commits only over the revocation set it sealed (attest.audit.revseals).

``Verifier.unaudited(policy, store)`` is the explicit, named exception: no log, no
seals (whoever can write the database can then enroll AKs, widen parents or delete
revocations: docs/threat-model.md, class 15). Tests use it; no command does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from attest.artifact import jws
from attest.audit.hooks import append_decision, record_decision
from attest.audit.log import AuditLog
from attest.decision import Decision, Denial
from attest.errors import AttestError, EvidenceError
from attest.policy.model import VerifierPolicy
from attest.policy.trust import TrustMaterial, load_trust
from attest.reasons import Reason
from attest.store import (
    ApprovalRolledBack,
    ClockRejected,
    NonceRejected,
    Replayed,
    Revoked,
    Snapshot,
    Store,
)
from attest.store.records import ArtifactRecord, LogPrefix
from attest.store.records import Enrollment as EnrolledAK
from attest.verify.appraisal import (
    Acceptance,
    Appraisal,
    Memo,
    Seal,
    Seals,
    SealVerdict,
    SnapshotQuery,
    appraise,
    snapshot_query,
)

# What the store refuses at commit time, each with its reason (a denial: nothing written).
_REFUSED = (Replayed, NonceRejected, Revoked, ApprovalRolledBack, ClockRejected)


class _Unlogged(Exception):
    """The audit log could not take an acceptance: its transaction rolls back."""


class Verifier:
    """Verifies artifacts against one policy, with one store for state and one audit log
    for every decision. Owns the memo of pure results its appraisals share."""

    def __init__(self, policy: VerifierPolicy, store: Store, log: AuditLog, *,
                 verifier_id: str | None = None, trust: TrustMaterial | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``trust``: the policy's trust material (attest.policy.trust), read now from
        the files the policy names when not given."""
        self._setup(policy, store, log, verifier_id, trust, clock)

    @classmethod
    def unaudited(cls, policy: VerifierPolicy, store: Store, *,
                  verifier_id: str | None = None, trust: TrustMaterial | None = None,
                  clock: Callable[[], float] = time.time) -> Verifier:
        """A verifier that logs nothing and checks no seal: the store is trusted as it
        is. For tests and measurements; never what a command runs."""
        verifier = cls.__new__(cls)
        verifier._setup(policy, store, None, verifier_id, trust, clock)
        return verifier

    def _setup(self, policy: VerifierPolicy, store: Store, log: AuditLog | None,
               verifier_id: str | None, trust: TrustMaterial | None,
               clock: Callable[[], float]) -> None:
        self.policy = policy
        self.store = store
        self.log = log
        self.verifier_id = verifier_id
        self.trust = load_trust(policy) if trust is None else trust
        self.memo = Memo()
        self._clock = clock

    @property
    def audited(self) -> bool:
        return self.log is not None

    def verify(self, raw: bytes, *, now: int | None = None) -> Decision:
        """The decision on ``raw``, logged (unless unaudited) and, when accepted,
        committed with its entry."""
        when = int(self._clock()) if now is None else now
        try:
            decision = self._decide(raw, when)
        except AttestError as exc:
            # With a reason (a store row changed outside attest: audit_unavailable), that
            # reason; without one, as any surprise.
            decision = Decision(False, (_surprise(exc) if exc.reason is None
                                        else Denial(exc.reason, exc.message),))
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            decision = Decision(False, (_surprise(exc),))
        if decision.accepted or self.log is None:
            return decision
        return self._log_denial(self.log, raw, decision)

    # -- the steps ---------------------------------------------------------------------
    def _decide(self, raw: bytes, now: int) -> Decision:
        try:
            artifact = jws.parse(raw)
        except EvidenceError as exc:
            return Decision(False, (Denial(exc.reason or Reason.INTERNAL_ERROR,
                                           exc.message),))
        query = snapshot_query(artifact, self.policy, self.memo)
        snapshot = None if query is None else read_snapshot(self.store, query, now)
        appraisal = appraise(artifact, self.policy, self.trust, snapshot, now, self.memo,
                             seals=self._seals(snapshot), audience=self.verifier_id)
        if appraisal.reset is not None:
            # Recorded whatever the decision (it is a denial): pending re-admission, so
            # that artifacts made before the reset count as an earlier boot's.
            self.store.record_reset(appraisal.reset.ak_name, appraisal.reset.clock, now)
        if appraisal.acceptance is None:
            return appraisal.denial()
        return self._accept(appraisal, appraisal.acceptance, now)

    def _seals(self, snapshot: Snapshot | None) -> Seals:
        """The verdicts on the seals of the snapshot's enrollment and parent (the log
        key's MACs: attest.audit.seals); UNCHECKED when unaudited or absent."""
        if self.log is None or snapshot is None:
            return Seals()
        return Seals(enrollment=self._seal(snapshot.enrollment),
                     parent=self._seal(snapshot.parent),
                     log_prefixes=tuple((row, self._seal(row))
                                        for row in snapshot.log_prefixes))

    def _seal(self, row: EnrolledAK | ArtifactRecord | LogPrefix | None) -> SealVerdict:
        if row is None or self.log is None:
            return Seal.UNCHECKED
        try:
            return Seal.GENUINE if self.log.sealed(row) else Seal.FORGED
        except AttestError as exc:  # the key is out of reach: named, never skipped
            return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)

    def _accept(self, appraisal: Appraisal, acceptance: Acceptance, now: int) -> Decision:
        record = acceptance.record
        decision = Decision(True, jti=appraisal.jti, subject=appraisal.subject,
                            host=appraisal.host, facts=acceptance.facts,
                            artifact_sha256=appraisal.artifact_sha256)
        try:
            with self.store.write() as tx:
                prefix = acceptance.log_prefix
                if prefix is not None and self.log is not None:
                    try:
                        # The audited verifier uses no prefix row without this seal (a
                        # database writer's row is a log it never appraised).
                        prefix = self.log.sealed_prefix(prefix)
                    except Exception as exc:
                        raise _Unlogged(f"{type(exc).__name__}: {exc}") from exc
                self.store.record_acceptance(
                    tx, record, nonce=acceptance.nonce, single_use=acceptance.single_use,
                    clock=acceptance.clock, now=now, approval=acceptance.approval,
                    log_prefix=prefix, log_whole=acceptance.log_whole)
                if self.log is None:
                    return decision
                try:
                    # Here, where the store has just looked the revocations up: the set
                    # its "not revoked" rests on must be the one this verifier sealed.
                    self.log.check_revocations(tx, record.jti, record)
                    index = append_decision(self.log, tx, decision,
                                            verifier_id=self.verifier_id, record=record)
                except Exception as exc:
                    # Whatever failed, the decision is unlogged: audit_unavailable.
                    raise _Unlogged(f"{type(exc).__name__}: {exc}") from exc
        except _REFUSED as exc:
            return _refused(appraisal, Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message))
        except _Unlogged as exc:
            # The acceptance rolled back with the failed append: nothing was consumed.
            return _refused(appraisal, Denial(
                Reason.AUDIT_UNAVAILABLE, f"the decision could not be logged: {exc}"))
        return dataclasses.replace(decision, audit_index=index)

    def _log_denial(self, log: AuditLog, raw: bytes, decision: Decision) -> Decision:
        """Append a denial in a transaction of its own; a denial that can't be logged
        stays a denial, with a second reason saying so."""
        try:
            index = record_decision(log, decision, verifier_id=self.verifier_id,
                                    artifact=jws.identity(raw))
        except AttestError as exc:
            missing = Denial(Reason.AUDIT_UNAVAILABLE,
                             f"the denial could not be logged either: {exc.message}")
            return dataclasses.replace(decision, denials=(*decision.denials, missing))
        return dataclasses.replace(decision, audit_index=index)


def read_snapshot(store: Store, query: SnapshotQuery, now: int) -> Snapshot:
    """The rows ``query`` names, in one read transaction (Store.snapshot)."""
    (snapshot,) = read_snapshots(store, [query], now)
    return snapshot


def read_snapshots(store: Store, queries: Sequence[SnapshotQuery], now: int) -> list[Snapshot]:
    """The rows each of ``queries`` names, all in one read transaction: how a batch of
    verifications reads before appraising them."""
    with store.read() as tx:
        return [store.snapshot_in(
            tx, query.ak_name, jti=query.jti, now=now, enrollment=query.enrollment,
            host=query.host, kid=query.kid, nonce=query.nonce, seen=query.seen,
            parent=query.parent, approval=query.approval, log_base=query.log_base)
            for query in queries]


def _surprise(exc: Exception) -> Denial:
    return Denial(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")


def _refused(appraisal: Appraisal, denial: Denial) -> Decision:
    """The denial of an artifact whose appraisal passed but whose commit was refused."""
    return Decision(False, (denial,), jti=appraisal.jti, subject=appraisal.subject,
                    host=appraisal.host)
