"""The verifier: the one entry point, an audited shell around the pure appraisal.

``Verifier(policy, store, log).verify(raw)`` parses the artifact, reads the store
snapshot its appraisal needs (attest.verify.appraisal.snapshot_query) and the verdicts
on that snapshot's seals, appraises (attest.verify.appraisal.appraise: no I/O), records
what the appraisal saw (a TPM reset), then commits its decision (attest.verify.batch):
for an acceptance, in ONE write transaction, the acceptance (nonce consumed, jti stored,
clock and boot epoch, approval mark: Store.record_acceptance), the check of the
revocations' seals, the audit entry and the artifact's seal; for a denial, its entry.
Concurrent calls (threads of one process, as a service runs them) share that write
transaction: the first becomes the leader and commits everything queued (group commit,
attest.audit.groupcommit), each acceptance in a savepoint of its own.
``verify_batch(raws)`` does the same for a list: one read transaction for every
snapshot, one write transaction for every decision. An acceptance that can't be logged
rolls back alone (audit_unavailable); a denial that can't be logged says so with a
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
from contextvars import ContextVar

from attest.artifact import jws
from attest.audit.groupcommit import GroupCommit
from attest.audit.log import AuditLog
from attest.decision import Decision, Denial
from attest.errors import AttestError, EvidenceError, StoreUnavailable
from attest.policy.model import VerifierPolicy
from attest.policy.trust import TrustMaterial, load_trust
from attest.reasons import Reason
from attest.store import Snapshot, Store, hosttrust
from attest.store.records import ArtifactRecord, LogPrefix
from attest.store.records import Enrollment as EnrolledAK
from attest.verify.appraisal import (
    Memo,
    Seal,
    Seals,
    SealVerdict,
    SnapshotQuery,
    appraise,
    nonce_denial,
    snapshot_query,
)
from attest.verify.batch import Member, commit, said


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
        # The service's: record each host's last decision in the commit (attest.store.
        # hoststate), and see every committed decision (its metrics). Off for the CLI.
        self.track_hosts = False
        self.on_decided: Callable[[Sequence[Decision]], None] | None = None
        # Continuous attestation (policy freshness.report_max_age): why an artifact is
        # denied for its host's trust state (untrusted, stale: attest.store.hosttrust),
        # or None. Whoever verifies under such a policy asks it, the service or the CLI.
        # Asked before the commit; whatever it raises is a denial.
        self.host_gate: Callable[[jws.ParsedArtifact, str, int], Denial | None] | None = (
            None if policy.freshness.report_max_age is None
            else _trust_gate(store, policy.freshness.report_max_age))
        # Concurrent verify calls share one write transaction (attest.verify.batch).
        self._group: GroupCommit[Member, Decision] = GroupCommit(self._commit)

    @property
    def audited(self) -> bool:
        return self.log is not None

    @property
    def waiting(self) -> int:
        """Verifications queued for the next group commit (not counting one in flight)."""
        return self._group.waiting

    def verify(self, raw: bytes, *, now: int | None = None) -> Decision:
        """The decision on ``raw``, logged (unless unaudited) and, when accepted,
        committed with its entry: in one transaction with those of the verifications
        running concurrently in other threads (attest.verify.batch)."""
        when = int(self._clock()) if now is None else now
        member = self._appraise(raw, when, None)
        if member.acceptance is None and self.log is None:
            return member.decision
        try:
            return self._group.submit(member)
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            return Decision(False, (_surprise(exc),), jti=member.decision.jti,
                            subject=member.decision.subject, host=member.decision.host)

    def verify_report(self, raw: bytes, *, now: int | None = None,
                      parsed: jws.ParsedArtifact | None = None, quoted_after: int | None = None
                      ) -> tuple[Decision, hosttrust.TrustView | None]:
        """:meth:`verify` for a host's report (POST /v1/reports), and its host's trust
        state when the acceptance's own transaction recorded it: an accepted report of a
        host that stays trusted moves only the report's time, written with the acceptance
        (attest.store.hosttrust.record_unchanged). None: the caller records the report's
        move (hosttrust.record_report), which changes the state or declines an old quote.
        ``parsed``: ``raw`` as the caller parsed it already (jws.parse is pure), so the
        report is not parsed twice. ``quoted_after``: when the report's challenge was
        issued; the report's time is then no later than that (a report quoted on a
        hoarded challenge is as old as the challenge)."""
        when = int(self._clock()) if now is None else now
        member = self._appraise(raw, when, None, parsed)
        mark = hosttrust.ReportMark(quoted_after=quoted_after)
        if member.acceptance is not None:
            member = dataclasses.replace(member, report=mark)
        elif self.log is None:
            return member.decision, None
        try:
            decision = self._group.submit(member)
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            return Decision(False, (_surprise(exc),), jti=member.decision.jti,
                            subject=member.decision.subject, host=member.decision.host), None
        # Set in the savepoint of an acceptance whose transaction may still have failed
        # after it (then the decision is a denial): it counts only with the acceptance.
        return decision, mark.view if decision.accepted else None

    def verify_batch(self, raws: Sequence[bytes], *, now: int | None = None) -> list[Decision]:
        """The decisions on ``raws``, in order: their snapshots read in ONE read
        transaction, then appraised, then committed (acceptances and every entry) in ONE
        write transaction, each acceptance in a savepoint of its own, so that a member
        refused at commit (its jti or nonce used earlier in the batch, say) is denied
        alone. Each member is appraised on the store as it was before the batch: one
        that rests on another member (a child on its parent) is appraised without it.
        If the write transaction fails, no member is accepted."""
        when = int(self._clock()) if now is None else now
        prepared = [self._prepare(raw, when) for raw in raws]
        try:
            found = read_snapshots(self.store, [q for _, q in prepared if q is not None], when)
        except Exception as exc:  # noqa: BLE001 - each member is denied for it, and logged
            members = [self._denied(raw, _caught(exc), when) for raw in raws]
        else:
            snapshots = iter(found)
            members = [self._appraise(raw, when, (p, None if q is None else next(snapshots)))
                       for raw, (p, q) in zip(raws, prepared, strict=True)]
        try:
            return self._commit(members)
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            return [Decision(False, (_surprise(exc),)) for _ in raws]

    # -- the steps ---------------------------------------------------------------------
    def _appraise(self, raw: bytes, now: int,
                  read: tuple[jws.ParsedArtifact | Decision, Snapshot | None] | None,
                  parsed_raw: jws.ParsedArtifact | None = None) -> Member:
        """``raw`` appraised (on the snapshot ``read`` gives, else one read now): the
        member to commit. Anything that raises is a denial."""
        try:
            if read is None:
                parsed, query = self._prepare(raw, now, parsed_raw)
                snapshot = None if query is None else read_snapshot(self.store, query, now)
            else:
                parsed, snapshot = read
            if isinstance(parsed, Decision):
                return Member(parsed, now, artifact=_identity(raw))
            appraisal = appraise(parsed, self.policy, self.trust, snapshot, now, self.memo,
                                 seals=self._seals(snapshot), audience=self.verifier_id)
            if appraisal.reset is not None:
                # Recorded whatever the decision (it is a denial): pending re-admission,
                # so that artifacts made before the reset count as an earlier boot's.
                self.store.record_reset(appraisal.reset.ak_name, appraisal.reset.clock, now)
            # Under continuous attestation the host's trust state (untrusted, stale) is
            # a reason of its own: added to a denial, so the host's answer says it too.
            gated = None
            if self.host_gate is not None and (appraisal.host is not None
                                               or appraisal.acceptance is not None):
                # No host (never on an acceptance) has no state: stale, so denied.
                gated = self.host_gate(parsed, appraisal.host or "", now)
            if appraisal.acceptance is None or gated is not None:
                found = (*appraisal.denials, *(() if gated is None else (gated,)))
                return Member(Decision(False, found, jti=appraisal.jti,
                                       subject=appraisal.subject, host=appraisal.host),
                              now, artifact=_identity(raw))
            acceptance = appraisal.acceptance
            return Member(Decision(True, jti=appraisal.jti, subject=appraisal.subject,
                                   host=appraisal.host, facts=acceptance.facts,
                                   artifact_sha256=appraisal.artifact_sha256),
                          now, artifact=appraisal.artifact_sha256, acceptance=acceptance)
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            return self._denied(raw, _caught(exc), now)

    def _query(self, artifact: jws.ParsedArtifact) -> SnapshotQuery | None:
        return snapshot_query(artifact, self.policy, self.memo)

    def _prepare(self, raw: bytes, now: int, parsed: jws.ParsedArtifact | None = None
                 ) -> tuple[jws.ParsedArtifact | Decision, SnapshotQuery | None]:
        """``raw`` parsed and the snapshot its appraisal needs, or the decision denying it.

        A minted challenge (attest.store.challenges) whose MAC or expiry fails is denied
        here, before the store is read or a signature checked: a forged nonce costs an
        HMAC, not an appraisal. Its decision names that reason alone."""
        artifact = _parse(raw) if parsed is None else parsed
        if isinstance(artifact, Decision):
            return artifact, None
        try:
            query = self._query(artifact)
            if query is not None and query.nonce is not None:
                state = self.store.precheck_nonce(query.nonce, now)
                if state is not None:
                    claims = artifact.claims
                    return Decision(False, (nonce_denial(state),), jti=claims.jti,
                                    subject=claims.sub), None
            return artifact, query
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            return Decision(False, (_caught(exc),)), None

    def _denied(self, raw: bytes, denial: Denial, now: int) -> Member:
        return Member(Decision(False, (denial,)), now, artifact=_identity(raw))

    def _commit(self, members: Sequence[Member]) -> list[Decision]:
        decided = commit(self.store, self.log, members, verifier_id=self.verifier_id,
                         track_hosts=self.track_hosts)
        if self.on_decided is not None:
            self.on_decided(decided)
        return decided

    def _seals(self, snapshot: Snapshot | None) -> Seals:
        """The verdicts on the seals of the snapshot's enrollment and parent (the log
        key's MACs: attest.audit.seals); UNCHECKED when unaudited or absent."""
        if self.log is None or snapshot is None:
            return Seals()
        return Seals(enrollment=self._seal(snapshot.enrollment),
                     parent=self._seal(snapshot.parent),
                     log_prefixes=tuple((row, self._seal(row))
                                        for row in snapshot.log_prefixes),
                     audited=True)

    def _seal(self, row: EnrolledAK | ArtifactRecord | LogPrefix | None) -> SealVerdict:
        if row is None or self.log is None:
            return Seal.UNCHECKED
        try:
            return Seal.GENUINE if self.log.sealed(row) else Seal.FORGED
        except AttestError as exc:  # the key is out of reach: named, never skipped
            return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)


REPORT_ACTION = "report"
# True only inside POST /v1/reports (attest.server.reports), around its verification: a
# report passes the host gate there alone, since that is how a host gets back to trusted.
# Anywhere else (POST /v1/verify, `attest verify`) an artifact for action report is gated
# as any other, or a stale or untrusted host would get an affirming result for it.
REPORTING: ContextVar[bool] = ContextVar("attest_reporting", default=False)


def _trust_gate(store: Store, max_age: int
                ) -> Callable[[jws.ParsedArtifact, str, int], Denial | None]:
    def gate(artifact: jws.ParsedArtifact, host: str, now: int) -> Denial | None:
        if artifact.claims.scope.action == REPORT_ACTION and REPORTING.get():
            return None  # a report is how a host gets (back) to trusted
        return hosttrust.view(store, host, now=now, max_age=max_age).denial()
    return gate


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


def _parse(raw: bytes) -> jws.ParsedArtifact | Decision:
    """The artifact, or the decision denying what is not one."""
    try:
        return jws.parse(raw)
    except EvidenceError as exc:
        return Decision(False, (Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message),))
    except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
        return Decision(False, (_surprise(exc),))


def _identity(raw: bytes) -> str | None:
    """What the audit entry names the artifact by (None for bytes that name none)."""
    try:
        return jws.identity(raw)
    except Exception:  # noqa: BLE001 - an entry without it still records the denial
        return None


def _caught(exc: Exception) -> Denial:
    # With a reason (a store row changed outside attest: audit_unavailable), that reason;
    # without one, as any surprise.
    if isinstance(exc, AttestError) and exc.reason is not None:
        return Denial(exc.reason, said(exc))  # the store out of reach: named, not located
    if isinstance(exc, StoreUnavailable):
        # The store is the audit log's database: a replica that lost it can neither read
        # what the decision needs nor log one. Named, not a surprise; where it failed is
        # the operator's to read, not the client's.
        return Denial(Reason.AUDIT_UNAVAILABLE, "the verifier's store is unavailable")
    return _surprise(exc)


def _surprise(exc: Exception) -> Denial:
    return Denial(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
