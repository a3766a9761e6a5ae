"""The appraisal of one artifact: a pure function of what was read before it.

:func:`appraise` takes the parsed artifact, the policy, its trust material, the store
snapshot read for the artifact (:func:`snapshot_query` says which rows), the verdicts
on that snapshot's seals and ``now``; it returns every denial and, when there is none,
what the acceptance commits. It reads no file, no database and no clock: the shell
(attest.verify.verifier) does that before and commits after, so that a batch of
appraisals can share one read and one write transaction. ``memo`` only remembers pure
results (certifications, parsed AKs, log replays, rule answers, EK chains).

Checks, in DESIGN.md's order. Each is a generator that yields its denials (and
returns its value, if it makes one: ``certified = yield from self._certification()``);
a check after which nothing further can be said returns None. Checks that do not
depend on a failed one still run, so several reasons are reported.

1. The JWS signature in canonical base64url, the claims canonicalizable (RFC 8785,
   for the binding): malformed_artifact. (Parsing, alg and typ: before, jws.parse.)
2. The AK is enrolled (or trusted by the policy), a restricted TPM-bound key,
   and its EK chain holds: ak_unknown, ak_revoked, key_attributes_invalid,
   ek_chain_invalid.
3. The signing key is certified by the AK with the expected attributes and
   authPolicy: key_not_certified, certify_signature_invalid,
   key_attributes_invalid, key_policy_mismatch.
4. The JWS signature verifies with the certified key: invalid_signature.
5. The quote: AK signature, extraData == binding, clock (safe, and placed among
   the AK's boots: attest.verify.tpmtime), required PCRs, pcrDigest:
   quote_malformed, quote_signature_invalid, binding_mismatch, clock_rollback,
   tpm_reset, stale_evidence, pcr_selection_insufficient, pcr_digest_mismatch.
6. The logs replay to the quoted PCRs and hold only measurements the reference
   values allow: eventlog_malformed, eventlog_mismatch, reference_value_mismatch.
   With key_policy.kind authorize (attest.verify.approvals): the artifact's approval
   is the authority's, approves the quoted sealed PCRs and is neither expired nor
   retired: key_policy_mismatch, malformed_artifact.
7. Times and freshness (nbf, exp, lifetime, iat age, the verifier's nonce; iat
   and the evidence's age by the TPM clock): not_yet_valid, expired,
   stale_evidence, nonce_unknown, nonce_reused, policy_mismatch, clock_rollback.
8. Single use, revocation, lineage, rules: replayed, revoked, lineage_broken,
   scope_escalation, policy_mismatch. Rules and the argv's match against a parent's
   patterns only once check 4 passed: before, the argv is anyone's text.

Step 9, recording the acceptance, is the shell's (attest.verify.verifier).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from attest import timetext
from attest.artifact import jws
from attest.artifact.model import (
    CERTIFICATION_LABEL,
    Claims,
    Evidence,
    b64url,
    binding,
    jti_namespace,
)
from attest.decision import Decision, Denial
from attest.errors import AttestError, EvidenceError
from attest.eventlog.appraise import appraise as appraise_events
from attest.eventlog.cel import CelRecord, check_content_bound, parse_cel
from attest.eventlog.replay import PCRBanks, compare_replay, replay, startup_locality
from attest.eventlog.tcg import TcgEvent, parse_tcg
from attest.evidence.ak import check_ak
from attest.evidence.certify import CertifiedKey, verify_certification
from attest.evidence.ekcert import ek_id
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.structures import Public, parse_public_tpm2b
from attest.memo import remember
from attest.policy.model import EnrollmentMode, NonceMode, VerifierPolicy
from attest.policy.trust import TrustMaterial
from attest.reasons import Reason
from attest.store.errors import Revoked
from attest.store.records import (
    ApprovalUse,
    ArtifactRecord,
    LogPrefix,
    NonceState,
    RevocationKind,
    SeenClock,
    Snapshot,
)
from attest.verify.approvals import approval_use, check_approval
from attest.verify.executables import executable_denials, measured_commands
from attest.verify.incremental import RuntimeState, appraise_suffix, whole_log_state
from attest.verify.lineage import check_lineage
from attest.verify.tpmtime import check_epoch, quote_time, time_denials

T = TypeVar("T")
Check = Generator[Denial, None, T]
"""A check: yields each denial it finds, returns what it establishes (None: nothing)."""

# Log texts whose appraisal a Memo keeps (a host's log changes only when it measures,
# so its artifacts repeat it), bounded by their total size in characters. Parsed
# records take about 3x their base64url text (docs/benchmarks.md, eventlog): at most
# ~64 MiB in all, and thousands of typical hosts' logs of a few KiB.
LOG_CACHE_CHARS = 16 << 20

# Rule answers kept per Memo: at most this many, for argv up to this many characters.
RULE_MEMO_SIZE = 4096
RULE_MEMO_MAX_ARGV_CHARS = 4096

# Parsed AKs (by their TPM2B_PUBLIC bytes), certifications and EK checks kept per Memo.
AK_CACHE_SIZE = 1024


class Seal(enum.Enum):
    """What the shell found of a snapshot row's seal (attest.audit.seals)."""

    GENUINE = "genuine"  # this verifier wrote the row as it stands
    FORGED = "forged"  # no seal, or one over other values: someone else wrote it
    UNCHECKED = "unchecked"  # an unaudited verification: the store is trusted as it is


SealVerdict = Seal | Denial
"""A Seal, or the denial that says why it could not be checked (the key is out of reach)."""


@dataclass(frozen=True)
class Seals:
    """The verdicts on the seals of a snapshot's enrollment and parent rows, made by the
    shell with the log key (a row absent from the snapshot is UNCHECKED)."""

    enrollment: SealVerdict = Seal.UNCHECKED
    parent: SealVerdict = Seal.UNCHECKED
    # Each runtime log prefix row of the snapshot with its verdict (incremental logs).
    log_prefixes: tuple[tuple[LogPrefix, SealVerdict], ...] = ()
    # Whether the shell checked seals at all (an audited verification): then a prefix row
    # without a verdict is one the shell never judged, and counts for nothing.
    audited: bool = False

    def prefix_sealed(self, row: LogPrefix) -> bool:
        """Whether a prefix row counts (attest.verify.incremental.PrefixSeal): genuine, or
        unchecked in an unaudited verification; raises the verdict's AttestError when the
        key was out of reach."""
        verdict = dict(self.log_prefixes).get(row, Seal.FORGED if self.audited
                                              else Seal.UNCHECKED)
        if isinstance(verdict, Denial):
            raise AttestError(verdict.message, reason=verdict.reason)
        return verdict is not Seal.FORGED


UNSEALED = Seals()


@dataclass(frozen=True)
class SnapshotQuery:
    """Which rows of the store an appraisal reads (Store.snapshot's arguments): derived
    from the artifact and the policy alone, so a batch can read many in one transaction."""

    ak_name: bytes
    jti: str
    enrollment: bool  # read the AK's enrollment (store enrollment); else ``host`` is known
    host: str | None
    kid: str
    nonce: str | None
    seen: bool
    parent: str | None
    approval: ApprovalUse | None
    # (policy digest, record count) of the runtime log prefix the artifact sends from.
    log_base: tuple[str, int] | None = None


@dataclass(frozen=True)
class Acceptance:
    """What accepting the artifact commits, in one transaction (Store.accept)."""

    record: ArtifactRecord
    clock: SeenClock
    nonce: str | None
    single_use: bool
    approval: ApprovalUse | None
    facts: dict[str, Any]
    # The accepted artifact's whole runtime log as a prefix (incremental logs), to
    # record with the acceptance and seal; ``log_whole``: the artifact sent all of it.
    log_prefix: LogPrefix | None = None
    log_whole: bool = False


@dataclass(frozen=True)
class ResetSeen:
    """A genuine quote showed a TPM reset the policy denies: the shell records it as the
    AK's new boot epoch, pending re-admission, whatever the decision."""

    ak_name: bytes
    clock: SeenClock


@dataclass(frozen=True)
class Appraisal:
    """Every denial found (none: ``acceptance`` says what to commit), whom the artifact
    names, and the side effect the shell must perform."""

    denials: tuple[Denial, ...]
    acceptance: Acceptance | None
    jti: str | None = None
    subject: str | None = None
    host: str | None = None
    artifact_sha256: str | None = None
    reset: ResetSeen | None = None

    def __post_init__(self) -> None:
        if (self.acceptance is None) == (not self.denials):
            raise ValueError("an appraisal accepts without a reason or denies with one")

    def denial(self) -> Decision:
        """The decision denying the artifact for these reasons."""
        return Decision(False, self.denials, jti=self.jti, subject=self.subject,
                        host=self.host)


@dataclass
class Memo:
    """Pure results a long-running verifier remembers between appraisals; owned by the
    shell, bounded like every cache (attest.memo). Forgetting any of it changes no
    decision, only its cost."""

    # Certifications prove properties of keys, not freshness: verify each once.
    certified: dict[bytes, CertifiedKey] = field(default_factory=dict)
    # EK chains checked, by certificate and EK, with the hour they were checked in.
    ek_checked: dict[bytes, int] = field(default_factory=dict)
    # Parsing an AK's public area and hashing its name is the same work every time.
    aks: dict[bytes, _AK] = field(default_factory=dict)
    # The logs' part of the appraisal, by their exact base64url text (see _logs).
    log_views: dict[tuple[str, str | None], LogView] = field(default_factory=dict)
    log_view_chars: int = 0
    rule_answers: dict[tuple[str, str, tuple[str, ...], str], bool] = field(
        default_factory=dict)


@dataclass(frozen=True)
class _AK:
    """An AK's TPM2B_PUBLIC parsed, its name, and what check_ak says of it (None: passes)."""

    public: Public
    name: bytes
    denial: Denial | None


@dataclass(frozen=True)
class _Subject:
    """Who the artifact speaks for, once the AK is known."""

    host: str
    ak: Public
    ak_name: bytes  # the AK's TPM name (ak.name, computed once)
    qualified_name: bytes | None


@dataclass(frozen=True)
class LogView:
    """The logs of an artifact, parsed and replayed, with what is wrong with them alone
    (``problem``: reported instead of any replay) and against the policy's reference
    values (``appraisal``: reported once they replay to the quoted PCRs)."""

    events: tuple[TcgEvent | CelRecord, ...]
    replayed: PCRBanks
    locality: int
    problem: Denial | None
    appraisal: Denial | None
    commands: frozenset[str]  # the digests of the commands the runtime log measured
    # The runtime log as a prefix to record on acceptance (attest.verify.incremental).
    state: RuntimeState | None = None

    @classmethod
    def refused(cls, problem: Denial) -> LogView:
        return cls((), {}, 0, problem, None, frozenset())


def snapshot_query(artifact: jws.ParsedArtifact, policy: VerifierPolicy,
                   memo: Memo) -> SnapshotQuery | None:
    """The rows :func:`appraise` needs for ``artifact``; None when it needs none (the
    artifact is denied on its own bytes: an unknown AK is refused without the store)."""
    appraiser = _Appraiser(artifact, policy, TrustMaterial(), None, UNSEALED, 0, memo, None)
    ak = _drain(appraiser.issuer(), appraiser.found)
    if appraiser.found or ak is None:
        return None
    claims = artifact.claims
    host = None
    if policy.enrollment is EnrollmentMode.POLICY:
        trusted = policy.trusted_ak(ak.name)
        if trusted is None or ak.denial is not None:
            return None
        host = trusted.host
    nonce = claims.eat_nonce
    if policy.freshness.nonce is NonceMode.FORBIDDEN:
        nonce = None  # refused unread (see _freshness)
    # The kid is the header's: its revocation counts only once the key is certified
    # under that name (see _state).
    base = claims.evidence.runtime_log_base
    return SnapshotQuery(
        ak_name=ak.name, jti=claims.jti, enrollment=host is None, host=host,
        kid=artifact.header.kid, nonce=nonce, seen=policy.artifacts.single_use,
        parent=None if claims.lineage is None else claims.lineage.parent,
        approval=approval_use(policy, claims.evidence),
        log_base=None if base is None else (policy.digest, base.count))


def appraise(artifact: jws.ParsedArtifact, policy: VerifierPolicy, trust: TrustMaterial,
             snapshot: Snapshot | None, now: int, memo: Memo, *, seals: Seals = UNSEALED,
             audience: str | None = None) -> Appraisal:
    """Appraise ``artifact`` (parsed by jws.parse) under ``policy`` and ``trust`` against
    ``snapshot`` (read as :func:`snapshot_query` says; None when it says None) at ``now``.
    ``audience``: this verifier's id, when it has one (the artifact's aud must match).
    Raises only on a bug; the shell turns that into a denial."""
    appraiser = _Appraiser(artifact, policy, trust, snapshot, seals, now, memo, audience)
    found = appraiser.found
    acceptance = _drain(appraiser.appraisal(), found)
    if not found and acceptance is None:
        found = [Denial(Reason.INTERNAL_ERROR, "a check failed without a reason")]
    return Appraisal(tuple(found), None if found else acceptance, jti=appraiser.jti,
                     subject=appraiser.subject_name, host=appraiser.host,
                     artifact_sha256=None if found else artifact.sha256,
                     reset=appraiser.reset)


def _drain(check: Check[T], found: list[Denial]) -> T:
    """Run a check to its end, adding each denial it yields to ``found`` as it is
    yielded (so later checks can see what is reported already); what it returned."""
    while True:
        try:
            found.append(next(check))
        except StopIteration as done:
            return cast(T, done.value)


class _Appraiser:
    """The checks of one appraisal, over its inputs (none of them read here)."""

    def __init__(self, artifact: jws.ParsedArtifact, policy: VerifierPolicy,
                 trust: TrustMaterial, snapshot: Snapshot | None, seals: Seals, now: int,
                 memo: Memo, audience: str | None) -> None:
        self.artifact = artifact
        self.claims = artifact.claims
        self.policy = policy
        self.trust = trust
        self.snapshot = snapshot
        self.seals = seals
        self.now = now
        self.memo = memo
        self.audience = audience
        # Whom the decision names: the jti and subject once the JWS is canonical, the
        # host once the AK is known (what the audit entry of a denial carries).
        self.jti: str | None = None
        self.subject_name: str | None = None
        self.host: str | None = None
        self.reset: ResetSeen | None = None
        # The runtime log the logs' check appraised, as a prefix for the acceptance.
        self.runtime_state: RuntimeState | None = None
        # Every denial yielded so far, in order: _drain adds each as it comes up.
        self.found: list[Denial] = []

    def appraisal(self) -> Check[Acceptance | None]:
        artifact, claims = self.artifact, self.claims
        if artifact.raw != artifact.signing_input + b"." + b64url(artifact.signature).encode():
            # Base64url leaves 4 bits of the signature's last character unused: without
            # this, 16 byte strings would verify as one artifact under different SHA-256s.
            yield Denial(Reason.MALFORMED_ARTIFACT,
                         "the JWS signature is not canonical base64url")
            self.jti, self.subject_name = claims.jti, claims.sub
            return None
        try:
            bound = binding(claims)
        except EvidenceError as exc:
            # JSON the parser takes but RFC 8785 has no form for (a lone surrogate):
            # no binding, so no quote can vouch for it.
            yield _denial(exc)
            return None
        self.jti, self.subject_name = claims.jti, claims.sub
        known = yield from self._subject()
        if known is None:
            return None
        subject, view = known
        self.host = subject.host
        certified = yield from self._certification(subject)
        signed = False
        if certified is not None:
            signed = yield from _signature(artifact, certified)
        quote = yield from self._quote(bound, subject)
        held = None
        if quote is not None:
            yield from self._epoch(quote, subject, view)
            held = yield from self._logs(quote)
        # The executable is looked for in the logs only once they replay and appraise:
        # in the very logs _logs checked, never in a second look-up of its cache.
        yield from executable_denials(claims.scope, self.policy, held)
        approval = None
        if certified is not None:  # an approval means something only for the policy's key
            approval = yield from check_approval(self.policy, claims.evidence, quote, self.now,
                                                 view.approval_serial)
        if claims.policy_id is not None and claims.policy_id != self.policy.id:
            yield Denial(Reason.POLICY_MISMATCH,
                         f"issued under policy {claims.policy_id!r}, verified under "
                         f"{self.policy.id!r}")
        yield from self._times(view)
        if quote is not None:
            yield from self._tpm_time(quote, view)
        # Patterns (rules, a parent's argv) cost a scan of the argv per pattern: only for
        # claims the JWS signature vouches for, never for anyone's text under a known AK.
        yield from self._state(certified, view, signed)
        if signed and not self._allowed(subject.host):
            yield Denial(Reason.POLICY_MISMATCH,
                         f"no rule lets {claims.sub!r} {claims.scope.action} "
                         f"{' '.join(claims.scope.argv)!r} on host {subject.host!r}")
        if self.found or quote is None or certified is None:
            return None
        facts = _facts(claims, subject, certified, quote)
        if approval is not None:  # which approval the key signed under, for the record
            facts["approval"] = {"id": approval.id, "serial": approval.serial}
        prefix = None
        if self.runtime_state is not None:  # the prefix the host may send from next
            facts["runtime_log"] = self.runtime_state.to_json()
            prefix = self.runtime_state.prefix(subject.ak_name, quote, self.policy.digest)
        return dataclasses.replace(self._acceptance(subject, certified, quote, facts),
                                   log_prefix=prefix,
                                   log_whole=claims.evidence.runtime_log_base is None)

    # -- 2. who the artifact speaks for -----------------------------------------------
    def issuer(self) -> Check[_AK | None]:
        """The AK the evidence carries, when it is the issuer's (iss, jti namespace)."""
        claims = self.claims
        ak = yield from self._ak(claims.evidence.ak_public)
        if ak is None:
            return None
        if ak.name.hex() != claims.iss:
            yield Denial(Reason.AK_UNKNOWN, "iss is not the name of the AK in the evidence")
            return None
        if not claims.jti.startswith(jti_namespace(claims.iss) + "."):
            # Each AK issues jtis in its own namespace: a jti spent by another AK can't
            # get this AK's artifact denied as replayed.
            yield Denial(Reason.MALFORMED_ARTIFACT,
                         "the jti is not in its issuer's namespace (SHA-256 of iss)")
            return None
        return ak

    def _subject(self) -> Check[tuple[_Subject, Snapshot] | None]:
        """Who the artifact speaks for: a trusted AK, or an enrolled one (sealed, not
        revoked, its EK chain holding under the trust material); with the snapshot."""
        claims = self.claims
        ak = yield from self.issuer()
        if ak is None:
            return None
        if self.policy.enrollment is EnrollmentMode.POLICY:
            trusted = self.policy.trusted_ak(ak.name)
            if trusted is None:
                yield Denial(Reason.AK_UNKNOWN,
                             f"AK {claims.iss[:16]}… is not among the policy's trusted_aks")
                return None
            if ak.denial is not None:
                yield ak.denial
                return None
            if self.snapshot is None:
                yield _unread()
                return None
            return (_Subject(trusted.host, ak.public, ak.name, trusted.ak_qualified_name),
                    self.snapshot)
        if self.snapshot is None:
            yield _unread()
            return None
        enrolled = self.snapshot.enrollment
        if enrolled is None or enrolled.ak_public != claims.evidence.ak_public:
            yield Denial(Reason.AK_UNKNOWN,
                         f"AK {claims.iss[:16]}… is not enrolled with this verifier")
            return None
        # Checked on the very row read for this decision, before anything rests on it:
        # its host, EK certificate and EK come from the database.
        seal = self.seals.enrollment
        if isinstance(seal, Denial):  # the key is out of reach: named, never skipped
            yield seal
            return None
        if seal is Seal.FORGED:
            yield Denial(Reason.AK_UNKNOWN,
                         f"AK {claims.iss[:16]}…: enrollment not made by this verifier (it "
                         "lacks the verifier's seal, or the row was changed since): enroll "
                         "again")
            return None
        if enrolled.revoked:
            yield Denial(Reason.AK_REVOKED, f"AK of host {enrolled.host} is revoked: "
                                            f"{enrolled.revocation_reason}")
            return None
        if ak.denial is not None:
            yield ak.denial
            return None
        if self.policy.ek_roots:
            held = yield from self._ek(enrolled.ek_certificate, enrolled.ek)
            if not held:
                return None
        return (_Subject(enrolled.host, ak.public, ak.name, enrolled.ak_qualified_name or None),
                self.snapshot)

    def _ak(self, ak_public: bytes) -> Check[_AK | None]:
        """The AK of the evidence, parsed and checked once per Memo."""
        known = self.memo.aks.get(ak_public)
        if known is not None:
            return known
        try:
            public = parse_public_tpm2b(ak_public)
        except EvidenceError as exc:
            yield Denial(Reason.MALFORMED_ARTIFACT, f"evidence.ak: {exc.message}")
            return None
        try:
            check_ak(public)
            denial = None
        except EvidenceError as exc:
            denial = _denial(exc)
        return remember(self.memo.aks, bytes(ak_public), _AK(public, public.name, denial),
                        AK_CACHE_SIZE)

    def _ek(self, certificate: bytes | None, ek: str | None) -> Check[bool]:
        """The enrollment's EK certificate holds under the trust material's EK roots and
        certifies the EK the store recorded for the AK's credential activation (``ek``)."""
        if certificate is None:
            # With ek_roots, an enrollment must show the EK's chain: none is no chain.
            yield Denial(Reason.EK_CHAIN_INVALID,
                         "the policy sets ek_roots and this AK was enrolled without an EK "
                         "certificate")
            return False
        if ek is None:
            # Without the activated EK, a certificate chaining to the roots says nothing
            # about this AK: any TPM's certificate would do (an enrollment made before
            # EKs were recorded, or its record deleted).
            yield Denial(Reason.EK_CHAIN_INVALID,
                         "the policy sets ek_roots and the store records no EK this AK was "
                         "activated under: enroll it again")
            return False
        # The certificate with its length, then the EK id: a bare concatenation lets a
        # byte move from the EK id to a certificate with trailing bytes.
        key = hashlib.sha256(len(certificate).to_bytes(4, "big") + certificate
                             + ek.encode()).digest()
        if self.memo.ek_checked.get(key, -1) // 3600 == self.now // 3600:
            return True  # checked within this hour: certificates change validity by the day
        try:
            verified = self.trust.verify_ek_certificate(certificate, self.now)
        except EvidenceError as exc:
            yield _denial(exc)
            return False
        if ek_id(verified.leaf.public_key) != ek:
            yield Denial(Reason.EK_CHAIN_INVALID,
                         "the enrollment's EK certificate is not for the EK its AK was "
                         "activated under")
            return False
        remember(self.memo.ek_checked, key, self.now, AK_CACHE_SIZE)
        return True

    # -- 3. the signing key -----------------------------------------------------------
    def _certification(self, subject: _Subject) -> Check[CertifiedKey | None]:
        evidence = self.claims.evidence
        expected_policy = self.policy.expected_key_policy_digest()
        # Each field with its length: joined with a separator, a byte moved across a
        # boundary (a TPMT_SIGNATURE starts with 0x00) would find another tuple's entry.
        cache_key = hashlib.sha256(b"".join(
            len(part).to_bytes(4, "big") + part
            for part in (evidence.certify, evidence.certify_signature, evidence.key_public,
                         evidence.ak_public, expected_policy))).digest()
        certified = self.memo.certified.get(cache_key)
        if certified is None:
            try:
                key_name = parse_public_tpm2b(evidence.key_public).name
                certified = verify_certification(
                    evidence.certify, evidence.certify_signature, subject.ak,
                    evidence.key_public, expected_policy=expected_policy,
                    expected_extra_data=hashlib.sha256(
                        CERTIFICATION_LABEL + key_name + subject.ak_name).digest(),
                    expected_signer=subject.qualified_name)
            except EvidenceError as exc:
                yield _denial(exc)
                return None
            # Bounded like every cache here: a host may certify as many keys as it likes.
            remember(self.memo.certified, cache_key, certified, AK_CACHE_SIZE)
        if certified.name.hex() != self.artifact.header.kid:
            yield Denial(Reason.KEY_NOT_CERTIFIED, "the JWS kid is not the certified key's name")
            return None
        return certified

    # -- 5. the quote -----------------------------------------------------------------
    def _quote(self, bound: bytes, subject: _Subject) -> Check[QuoteFacts | None]:
        claims = self.claims
        bank = self.policy.pcrs.bank
        if claims.env_bank != bank:
            yield Denial(Reason.POLICY_MISMATCH,
                         f"the artifact claims {claims.env_bank} PCRs; the policy quotes "
                         f"{bank}")
            return None
        try:
            # No ``previous``: the quote's clock is placed among the AK's boots by
            # tpmtime.check_epoch, which allows honest quotes in any order.
            return verify_quote(
                claims.evidence.quote, claims.evidence.quote_signature, subject.ak,
                expected_extra_data=bound,
                pcr_values={(bank, i): bytes.fromhex(v) for i, v in claims.env_pcrs.items()},
                required_pcrs=self.policy.required_pcrs,
                expected_signer=subject.qualified_name)
        except EvidenceError as exc:
            yield _denial(exc)
            return None

    def _epoch(self, quote: QuoteFacts, subject: _Subject, view: Snapshot) -> Check[None]:
        """Place the verified quote's clock among the AK's boots (attest.verify.tpmtime)."""
        misplaced = check_epoch(view.epoch, quote.clock_info,
                                deny_reset=self.policy.freshness.deny_reset)
        if misplaced is None:
            return
        yield misplaced
        if misplaced.reason is Reason.TPM_RESET:
            # The quote is genuine: the TPM did restart. The shell records it, pending
            # re-admission, so that artifacts made before the reset count as an earlier
            # boot's.
            clock = quote.clock_info
            self.reset = ResetSeen(subject.ak_name, SeenClock(
                clock.clock, clock.reset_count, clock.restart_count))

    # -- 6. the logs ------------------------------------------------------------------
    def _logs(self, quote: QuoteFacts) -> Check[frozenset[str] | None]:
        """Check the logs against the quote and the reference values; return the digests
        of the commands they measured when they hold."""
        evidence = self.claims.evidence
        base = evidence.runtime_log_base
        if base is not None:
            # Only the records after a prefix this verifier appraised (incremental logs).
            outcome = appraise_suffix(
                evidence, base, () if self.snapshot is None else self.snapshot.log_prefixes,
                quote, self.policy, self.seals.prefix_sealed)
            if outcome.denial is not None:
                yield outcome.denial
            self.runtime_state = outcome.state
            return outcome.commands
        memo = self.memo
        key = (evidence.encoded("runtime_log"), evidence.encoded("boot_log"))
        view = memo.log_views.get(key)
        if view is None:
            view = self._log_view(evidence)
            size = len(key[0]) + len(key[1] or "")
            if memo.log_view_chars + size > LOG_CACHE_CHARS:
                memo.log_views.clear()
                memo.log_view_chars = 0
            memo.log_views[key] = view
            memo.log_view_chars += size
        denial = log_denial(view, quote, self.policy)
        if denial is not None:
            yield denial
            return None
        self.runtime_state = view.state
        return view.commands

    def _log_view(self, evidence: Evidence) -> LogView:
        return view_logs(evidence.runtime_log, evidence.boot_log, self.policy)

    # -- 7. times and freshness -------------------------------------------------------
    def _times(self, view: Snapshot) -> Check[None]:
        claims, now = self.claims, self.now
        skew = self.policy.freshness.clock_skew
        if claims.nbf > now + skew or claims.iat > now + skew:
            yield Denial(Reason.NOT_YET_VALID,
                         f"valid from {timetext.moment(claims.nbf, now)}, issued "
                         f"{timetext.moment(claims.iat, now)}")
        if claims.exp + skew < now:
            yield Denial(Reason.EXPIRED, f"expired at {timetext.moment(claims.exp, now)}")
        lifetime = self.policy.artifacts.max_lifetime
        if claims.exp - claims.iat > lifetime:
            yield Denial(Reason.POLICY_MISMATCH,
                         f"a lifetime of {timetext.about(claims.exp - claims.iat)} exceeds "
                         f"the policy's {timetext.about(lifetime)}")
        if self.audience is not None and claims.aud not in (None, self.audience):
            yield Denial(Reason.POLICY_MISMATCH, f"the artifact is for verifier {claims.aud!r}")
        yield from self._freshness(view)

    def _tpm_time(self, quote: QuoteFacts, view: Snapshot) -> Check[None]:
        """iat and the evidence's age against the TPM clock (see attest.verify.tpmtime);
        a reason already reported for the artifact is not repeated."""
        reported = {denial.reason for denial in self.found}
        if reported & {Reason.CLOCK_ROLLBACK, Reason.TPM_RESET}:
            return  # the quote's place among the boots is refused: its clock says nothing
        freshness = self.policy.freshness
        when = quote_time(view.epoch, quote.clock_info, self.now)
        max_age = None if self.claims.eat_nonce is not None else freshness.max_age
        for denial in time_denials(self.claims.iat, when, self.now, max_age=max_age,
                                   skew=freshness.clock_skew,
                                   challenged_at=view.nonce_issued_at):
            if denial.reason not in reported:
                yield denial

    def _freshness(self, view: Snapshot) -> Check[None]:
        claims, now = self.claims, self.now
        mode = self.policy.freshness.nonce
        if claims.eat_nonce is None:
            if mode is NonceMode.REQUIRED:
                yield Denial(Reason.NONCE_UNKNOWN,
                             "the policy requires a verifier challenge (eat_nonce)")
                return
            max_age = self.policy.freshness.max_age
            if now - claims.iat > max_age:
                yield Denial(Reason.STALE_EVIDENCE,
                             f"evidence is {timetext.about(now - claims.iat)} old (issued "
                             f"{timetext.iso(claims.iat)}); at most {timetext.about(max_age)}")
            return
        if mode is NonceMode.FORBIDDEN:
            yield Denial(Reason.POLICY_MISMATCH, "the policy accepts no nonce")
            return
        state = view.nonce  # read for this nonce (see snapshot_query)
        if state is not NonceState.USABLE:
            yield nonce_denial(state or NonceState.UNKNOWN)

    # -- 8. state: single use, revocation, lineage, rules -----------------------------
    def _state(self, certified: CertifiedKey | None, view: Snapshot,
               signed: bool) -> Check[None]:
        claims = self.claims
        if self.policy.artifacts.single_use and view.jti_seen:
            yield Denial(Reason.REPLAYED, f"artifact {claims.jti} was already used")
        # Revocations of the jti, kid, AK and host, most specific first. The key is known
        # once certified (under the header's kid, exactly); the kid is attacker text until
        # then, and an uncertified key is a denial already: its revocation does not count.
        revoked = next((r for r in view.revocations
                        if certified is not None or r.kind is not RevocationKind.KEY), None)
        if revoked is not None:
            # The same words the store uses at commit time: an AK revocation is ak_revoked.
            yield _denial(Revoked(revoked))
        if claims.lineage is None:
            return
        unsealed = _unsealed_parent(view.parent, self.seals.parent)
        if unsealed is not None:
            # Nothing of the row counts (scope, exp, depth, digest): not even parsed.
            yield unsealed
            return
        yield from check_lineage(view.parent, view.parent_revocation, claims.lineage,
                                 claims.scope, claims.exp, self.policy.lineage, self.now,
                                 match_argv=signed)

    def _allowed(self, host: str) -> bool:
        """Whether a rule of the policy matches; remembered per request shape, since a
        host asks for the same few commands again and again (glob matching is pure)."""
        scope = self.claims.scope
        key = (self.claims.sub, scope.action, scope.argv, host)
        allowed = self.memo.rule_answers.get(key)
        if allowed is None:
            allowed = self.policy.match_rule(*key) is not None
            if sum(map(len, scope.argv)) <= RULE_MEMO_MAX_ARGV_CHARS:
                remember(self.memo.rule_answers, key, allowed, RULE_MEMO_SIZE)
        return allowed

    # -- what an acceptance commits ---------------------------------------------------
    def _acceptance(self, subject: _Subject, certified: CertifiedKey, quote: QuoteFacts,
                    facts: dict[str, Any]) -> Acceptance:
        claims = self.claims
        use = approval_use(self.policy, claims.evidence)
        record = ArtifactRecord(
            jti=claims.jti, sha256=self.artifact.sha256,
            parent_jti=claims.lineage.parent if claims.lineage else None,
            depth=claims.lineage.depth if claims.lineage else 0, exp=claims.exp,
            host=subject.host, kid=certified.name.hex(), ak_name=subject.ak_name.hex(),
            subject=claims.sub, scope=json.dumps(claims.scope.to_json(), sort_keys=True),
            approval=None if use is None else use.id)
        clock = SeenClock(quote.clock_info.clock, quote.clock_info.reset_count,
                          quote.clock_info.restart_count)
        return Acceptance(record, clock, claims.eat_nonce, self.policy.artifacts.single_use,
                          use, facts)


def view_logs(runtime_log: bytes, boot_log: bytes | None, policy: VerifierPolicy, *,
              with_state: bool = True) -> LogView:
    """What the logs say on their own and against the policy's reference values: the part
    of the log check that does not depend on the quote (shared with attest.verify.signature).
    ``with_state``: also the runtime log's state as a prefix (LogView.state), which only an
    artifact's acceptance records (incremental logs); a bundle, verified offline and never
    recorded, goes without (it decides nothing: no check reads it)."""
    try:
        runtime = parse_cel(runtime_log).records
        check_content_bound(runtime)
        boot = None if boot_log is None else parse_tcg(boot_log).events
        # Each PCR is explained by the one log the policy appraises for it.
        policy.log_sources.check(runtime, boot)
        events: list[TcgEvent | CelRecord] = [*(boot or ()), *runtime]
        replayed = replay(events)
        locality = startup_locality(events)
    except EvidenceError as exc:
        return LogView.refused(_denial(exc))
    appraisal = None
    if policy.reference is not None:
        try:
            # check_content_bound(runtime) passed above: the same records, not twice.
            appraise_events(events, policy.reference, covered=policy.log_sources.covered,
                            bound_checked=True)
        except EvidenceError as exc:
            appraisal = _denial(exc)
    commands = measured_commands(runtime)
    return LogView(tuple(events), replayed, locality, None, appraisal, commands,
                   whole_log_state(runtime_log, len(runtime), replayed,
                                   policy.log_sources.runtime_pcr, commands)
                   if with_state else None)


def log_denial(view: LogView, quote: QuoteFacts, policy: VerifierPolicy) -> Denial | None:
    """The logs' denial against a verified quote: their own problem, a replay that does not
    reach the quoted PCRs, or a measurement the reference values do not allow; None when
    they hold."""
    if view.problem is not None:
        return view.problem
    quoted = {(b, i): v for b, values in quote.pcrs.items() for i, v in values.items()}
    bank = policy.pcrs.bank
    try:
        # The runtime PCR and every appraised boot PCR: a log silent about one of them
        # must reproduce its quoted value from nothing, not leave it "not covered".
        compare_replay(view.events, view.replayed, view.locality, quoted,
                       require=[(bank, i) for i in policy.log_sources.must_replay()])
    except EvidenceError as exc:
        return _denial(exc)
    return view.appraisal


def _signature(artifact: jws.ParsedArtifact, certified: CertifiedKey) -> Check[bool]:
    """4. The JWS signature under the certified key; returns whether it holds."""
    try:
        jws.verify_signature(artifact, certified.key)
    except EvidenceError as exc:
        yield _denial(exc)
        return False
    return True


def _unsealed_parent(parent: ArtifactRecord | None, seal: SealVerdict) -> Denial | None:
    """lineage_broken when the parent's row lacks this verifier's seal (attest.audit.seals),
    or the named denial when the seal could not be checked; None when it holds, when there
    is no parent row (check_lineage denies that) or no check (an unaudited verification
    trusts its store: docs/threat-model.md, class 15)."""
    if parent is None or seal is Seal.UNCHECKED or seal is Seal.GENUINE:
        return None
    if isinstance(seal, Denial):  # the key is out of reach: named, never skipped
        return seal
    return Denial(Reason.LINEAGE_BROKEN,
                  f"the parent {parent.jti}'s record was not written by this verifier (it "
                  "lacks the verifier's seal, or the row was changed since): reissue the "
                  "parent")


def _unread() -> Denial:
    # The shell read no snapshot where one is needed: misuse, denied all the same.
    return Denial(Reason.INTERNAL_ERROR, "the appraisal needs the store's snapshot, none read")


def _denial(exc: AttestError) -> Denial:
    return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)


def nonce_denial(state: NonceState) -> Denial:
    """The denial of an artifact whose nonce is in ``state`` (not usable)."""
    if state is NonceState.USED:
        return Denial(Reason.NONCE_REUSED, "the challenge was already used")
    if state is NonceState.EXPIRED:
        return Denial(Reason.STALE_EVIDENCE, "the challenge expired")
    return Denial(Reason.NONCE_UNKNOWN, "this verifier never issued that challenge")


def _facts(claims: Claims, subject: _Subject, certified: CertifiedKey,
           quote: QuoteFacts) -> dict[str, Any]:
    return {
        "host": subject.host,
        "ak": subject.ak_name.hex(),
        "key": certified.name.hex(),
        "action": claims.scope.action,
        "argv": list(claims.scope.argv),
        "pcrs": {bank: {str(i): v.hex() for i, v in sorted(values.items())}
                 for bank, values in quote.pcrs.items()},
        "clock": quote.clock_info.clock,
    }
