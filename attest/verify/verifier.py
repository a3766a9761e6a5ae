"""The fail-closed verifier: an artifact is accepted only when every check holds.

Checks, in DESIGN.md's order. Each failure is a denial with its reason; checks
that do not depend on a failed one still run, so several reasons are reported.

1. The JWS parses (its signature in canonical base64url), alg ES256, typ, claims
   well-formed and canonicalizable (RFC 8785, for the binding):
   malformed_artifact, alg_not_allowed.
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
9. The acceptance is recorded atomically (nonce consumed, jti stored, clock
   advanced and boot epoch merged, approval serial mark raised, audit entry
   appended): replayed, nonce_reused, revoked, key_policy_mismatch, stale_evidence,
   clock_rollback, audit_unavailable.

Anything that raises inside is a denial (internal_error), never an acceptance.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attest.artifact import jws
from attest.artifact.model import Claims, Evidence, b64url, binding, jti_namespace
from attest.certfiles import read_certificates
from attest.errors import AttestError, EvidenceError, UsageError
from attest.eventlog.appraise import appraise
from attest.eventlog.cel import CelRecord, check_content_bound, parse_cel
from attest.eventlog.replay import PCRBanks, compare_replay, replay, startup_locality
from attest.eventlog.tcg import TcgEvent, parse_tcg
from attest.evidence.ak import check_ak
from attest.evidence.certify import CertifiedKey, verify_certification
from attest.evidence.ekcert import ek_id, verify_ek_certificate
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.structures import Public, parse_public_tpm2b
from attest.memo import remember
from attest.policy.model import Enrollment, NonceMode, VerifierPolicy
from attest.reasons import Reason
from attest.store import (
    ApprovalRolledBack,
    ArtifactRecord,
    ClockRejected,
    NonceRejected,
    NonceState,
    Replayed,
    RevocationKind,
    Revoked,
    SeenClock,
    Snapshot,
    Store,
)
from attest.store.records import Enrollment as EnrolledAK
from attest.verify.approvals import approval_use, check_approval
from attest.verify.decision import Decision, Denial
from attest.verify.executables import executable_denials, measured_commands
from attest.verify.lineage import check_lineage
from attest.verify.tpmtime import check_epoch, quote_time, time_denials

# What the host puts in a key certification's qualifyingData (attest.artifact.issue).
CERTIFICATION_LABEL = b"attest key certification\0"

AuditHook = Callable[[Decision, Any], int]
"""Appends a decision to the audit log inside the acceptance transaction; returns its index."""

SealCheck = Callable[[EnrolledAK | ArtifactRecord], bool]
"""Whether this verifier wrote a row as it stands (attest.audit.seals): an enrollment it
made, or an artifact it accepted (a child's parent). The audited path passes the log
key's check; raises AttestError when it cannot tell."""

# Log texts whose appraisal a Verifier keeps (a host's log changes only when it
# measures, so its artifacts repeat it), bounded by their total size in characters.
# Parsed records take about 3x their base64url text (docs/benchmarks.md, eventlog):
# at most ~64 MiB in all, and thousands of typical hosts' logs of a few KiB.
LOG_CACHE_CHARS = 16 << 20

# Rule answers kept per Verifier: at most this many, for argv up to this many characters.
RULE_MEMO_SIZE = 4096
RULE_MEMO_MAX_ARGV_CHARS = 4096

# Parsed AKs kept per Verifier (by their TPM2B_PUBLIC bytes); a verifier sees few AKs.
AK_CACHE_SIZE = 1024


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
    ek_certificate: bytes | None


@dataclass(frozen=True)
class _LogView:
    """The logs of an artifact, parsed and replayed, with what is wrong with them alone
    (``problem``: reported instead of any replay) and against the policy's reference
    values (``appraisal``: reported once they replay to the quoted PCRs)."""

    events: tuple[TcgEvent | CelRecord, ...]
    replayed: PCRBanks
    locality: int
    problem: Denial | None
    appraisal: Denial | None
    commands: frozenset[str]  # the digests of the commands the runtime log measured

    @classmethod
    def refused(cls, problem: Denial) -> _LogView:
        return cls((), {}, 0, problem, None, frozenset())


class _Denied(Exception):
    """A check that leaves nothing further to verify (the AK is unknown, say)."""


class _AuditFailed(Exception):
    """The audit hook raised inside the acceptance transaction: audit_unavailable."""


class Verifier:
    """Appraises artifacts against one policy, with one store for state."""

    def __init__(self, policy: VerifierPolicy, store: Store, *, verifier_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.store = store
        self.verifier_id = verifier_id
        self._clock = clock
        # Certifications prove properties of keys, not freshness: verify each once.
        self._certified: dict[bytes, CertifiedKey] = {}
        self._ek_checked: dict[bytes, int] = {}
        # Parsing an AK's public area and hashing its name is the same work every time.
        self._aks: dict[bytes, _AK] = {}
        # The logs' part of the appraisal, by their exact base64url text (see _logs).
        self._log_views: dict[tuple[str, str | None], _LogView] = {}
        self._log_view_chars = 0
        self._rule_answers: dict[tuple[str, str, tuple[str, ...], str], bool] = {}

    def verify(self, raw: bytes, *, now: int | None = None, audit: AuditHook | None = None,
               sealed: SealCheck | None = None) -> Decision:
        """The decision on ``raw``. With ``sealed``, an enrollment from the store counts
        only if it holds, and so does a parent's row a child's lineage is checked against
        (attest.verify.audited passes the log key's seal check); without it, the store's
        enrollments and artifacts are trusted as they are: whoever can write the database
        can then enroll AKs, or widen or invent parents (docs/threat-model.md, class
        15). Revocations likewise: only an ``audit`` hook that checks their seals (the
        audited path's, attest.verify.audited) refuses to accept over a set a database
        writer cut down; a bare Verifier has no key and trusts the store's revocations
        as they are."""
        when = int(self._clock()) if now is None else now
        try:
            return self._verify(raw, when, audit, sealed)
        except Exception as exc:  # noqa: BLE001 - fail closed: any surprise is a denial
            if isinstance(exc, AttestError) and exc.reason is not None:
                # e.g. a store row changed outside attest (audit_unavailable): its reason
                return Decision(False, (_denial(exc),))
            return Decision(False, (Denial(Reason.INTERNAL_ERROR,
                                           f"{type(exc).__name__}: {exc}"),))

    # -- the checks ------------------------------------------------------------------
    def _verify(self, raw: bytes, now: int, audit: AuditHook | None,
                sealed: SealCheck | None) -> Decision:
        try:
            artifact = jws.parse(raw)
        except EvidenceError as exc:
            return Decision(False, (_denial(exc),))
        claims = artifact.claims
        if artifact.raw != artifact.signing_input + b"." + b64url(artifact.signature).encode():
            # Base64url leaves 4 bits of the signature's last character unused: without
            # this, 16 byte strings would verify as one artifact under different SHA-256s.
            return Decision(False, (Denial(Reason.MALFORMED_ARTIFACT,
                                           "the JWS signature is not canonical base64url"),),
                            jti=claims.jti, subject=claims.sub)
        try:
            bound = binding(claims)
        except EvidenceError as exc:
            # JSON the parser takes but RFC 8785 has no form for (a lone surrogate):
            # no binding, so no quote can vouch for it.
            return Decision(False, (_denial(exc),))
        denials: list[Denial] = []
        try:
            subject, view = self._subject(artifact, now, sealed)
        except _Denied as stop:
            return Decision(False, tuple(stop.args[0]), jti=claims.jti, subject=claims.sub)
        certified = self._certification(artifact, subject, denials)
        signed = False
        if certified is not None:
            before = len(denials)
            _collect(denials, lambda: jws.verify_signature(artifact, certified.key))
            signed = len(denials) == before
        quote = self._quote(claims, bound, subject, view, denials)
        held = None
        if quote is not None:
            self._epoch(quote, subject, view, now, denials)
            held = self._logs(claims, quote, denials)
        # The executable is looked for in the logs only once they replay and appraise:
        # in the very logs _logs checked, never in a second look-up of its cache.
        denials.extend(executable_denials(claims.scope, self.policy, held))
        approval = None
        if certified is not None:  # an approval means something only for the policy's key
            approval, found = check_approval(self.policy, claims.evidence, quote, now,
                                             view.approval_serial)
            denials.extend(found)
        if claims.policy_id is not None and claims.policy_id != self.policy.id:
            denials.append(Denial(Reason.POLICY_MISMATCH,
                                  f"issued under policy {claims.policy_id!r}, verified under "
                                  f"{self.policy.id!r}"))
        denials.extend(self._times(claims, view, now))
        if quote is not None:
            denials.extend(self._tpm_time(claims, quote, view, now, denials))
        # Patterns (rules, a parent's argv) cost a scan of the argv per pattern: only for
        # claims the JWS signature vouches for, never for anyone's text under a known AK.
        denials.extend(self._state(artifact, subject, certified, view, now, signed, sealed))
        if signed and not self._allowed(claims.sub, claims.scope.action, claims.scope.argv,
                                        subject.host):
            denials.append(Denial(Reason.POLICY_MISMATCH,
                                  f"no rule lets {claims.sub!r} {claims.scope.action} "
                                  f"{' '.join(claims.scope.argv)!r} on host {subject.host!r}"))
        if denials or quote is None or certified is None:
            return Decision(False, tuple(denials) or (
                Denial(Reason.INTERNAL_ERROR, "a check failed without a reason"),),
                jti=claims.jti, subject=claims.sub, host=subject.host)
        facts = _facts(claims, subject, certified, quote)
        if approval is not None:  # which approval the key signed under, for the record
            facts["approval"] = {"id": approval.id, "serial": approval.serial}
        return self._accept(artifact, subject, certified, quote, facts, now, audit)

    def _allowed(self, subject: str, action: str, argv: tuple[str, ...], host: str) -> bool:
        """Whether a rule of the policy matches; remembered per request shape, since a
        host asks for the same few commands again and again (glob matching is pure)."""
        key = (subject, action, argv, host)
        allowed = self._rule_answers.get(key)
        if allowed is None:
            allowed = self.policy.match_rule(subject, action, argv, host) is not None
            if sum(map(len, argv)) <= RULE_MEMO_MAX_ARGV_CHARS:
                remember(self._rule_answers, key, allowed, RULE_MEMO_SIZE)
        return allowed

    def _subject(self, artifact: jws.ParsedArtifact, now: int,
                 sealed: SealCheck | None) -> tuple[_Subject, Snapshot]:
        """Who the artifact speaks for, and the store's state for it (one read)."""
        claims = artifact.claims
        ak = self._ak(claims.evidence.ak_public)
        if ak.name.hex() != claims.iss:
            raise _Denied([Denial(Reason.AK_UNKNOWN,
                                  "iss is not the name of the AK in the evidence")])
        if not claims.jti.startswith(jti_namespace(claims.iss) + "."):
            # Each AK issues jtis in its own namespace: a jti spent by another AK can't
            # get this AK's artifact denied as replayed.
            raise _Denied([Denial(Reason.MALFORMED_ARTIFACT,
                                  "the jti is not in its issuer's namespace (SHA-256 of iss)")])
        if self.policy.enrollment is Enrollment.POLICY:
            trusted = self.policy.trusted_ak(ak.name)
            if trusted is None:
                raise _Denied([Denial(Reason.AK_UNKNOWN,
                                      f"AK {claims.iss[:16]}… is not among the policy's "
                                      "trusted_aks")])
            subject = _Subject(trusted.host, ak.public, ak.name, trusted.ak_qualified_name,
                               None)
            if ak.denial is not None:
                raise _Denied([ak.denial])
            # No state is read before here: an untrusted AK is refused without the store.
            return subject, self._snapshot(artifact, ak.name, host=subject.host, now=now)
        view = self._snapshot(artifact, ak.name, host=None, now=now)
        enrolled = view.enrollment
        if enrolled is None or enrolled.ak_public != claims.evidence.ak_public:
            raise _Denied([Denial(Reason.AK_UNKNOWN,
                                  f"AK {claims.iss[:16]}… is not enrolled with this "
                                  "verifier")])
        if sealed is not None:
            # Checked on the very row read for this decision, before anything rests on it:
            # its host, EK certificate and EK come from the database.
            try:
                genuine = sealed(enrolled)
            except AttestError as exc:  # the key is out of reach: named, never skipped
                raise _Denied([_denial(exc)]) from None
            if not genuine:
                raise _Denied([Denial(Reason.AK_UNKNOWN,
                                      f"AK {claims.iss[:16]}…: enrollment not made by this "
                                      "verifier (it lacks the verifier's seal, or the row "
                                      "was changed since): enroll again")])
        if enrolled.revoked:
            raise _Denied([Denial(Reason.AK_REVOKED,
                                  f"AK of host {enrolled.host} is revoked: "
                                  f"{enrolled.revocation_reason}")])
        subject = _Subject(enrolled.host, ak.public, ak.name,
                           enrolled.ak_qualified_name or None, enrolled.ek_certificate)
        if ak.denial is not None:
            raise _Denied([ak.denial])
        if self.policy.ek_roots:
            self._check_ek(subject.ek_certificate, enrolled.ek, now)
        return subject, view

    def _ak(self, ak_public: bytes) -> _AK:
        """The AK of the evidence, parsed and checked once per Verifier."""
        known = self._aks.get(ak_public)
        if known is not None:
            return known
        try:
            public = parse_public_tpm2b(ak_public)
        except EvidenceError as exc:
            raise _Denied([Denial(Reason.MALFORMED_ARTIFACT, f"evidence.ak: {exc.message}")]) \
                from None
        try:
            check_ak(public)
            denial = None
        except EvidenceError as exc:
            denial = _denial(exc)
        return remember(self._aks, bytes(ak_public), _AK(public, public.name, denial),
                        AK_CACHE_SIZE)

    def _snapshot(self, artifact: jws.ParsedArtifact, ak_name: bytes, *, host: str | None,
                  now: int) -> Snapshot:
        """What the checks read of the store, in one read transaction: the enrollment
        (when ``host`` is None: the enrolled host), the AK's clock, the nonce, the jti,
        revocations, the parent. The kid is the header's: its revocation counts only once
        the key is certified under that name (see _state)."""
        claims = artifact.claims
        nonce = claims.eat_nonce
        if self.policy.freshness.nonce is NonceMode.FORBIDDEN:
            nonce = None  # refused unread (see _freshness)
        return self.store.snapshot(
            ak_name, jti=claims.jti, now=now, enrollment=host is None, host=host,
            kid=artifact.header.kid, nonce=nonce, seen=self.policy.artifacts.single_use,
            parent=None if claims.lineage is None else claims.lineage.parent,
            approval=approval_use(self.policy, claims.evidence))

    def _check_ek(self, certificate: bytes | None, ek: str | None, now: int) -> None:
        """The enrollment's EK certificate holds under ek_roots and certifies the EK the
        store recorded for the AK's credential activation (``ek``)."""
        if certificate is None:
            # With ek_roots, an enrollment must show the EK's chain: none is no chain.
            raise _Denied([Denial(Reason.EK_CHAIN_INVALID,
                                  "the policy sets ek_roots and this AK was enrolled without "
                                  "an EK certificate")])
        if ek is None:
            # Without the activated EK, a certificate chaining to the roots says nothing
            # about this AK: any TPM's certificate would do (an enrollment made before
            # EKs were recorded, or its record deleted).
            raise _Denied([Denial(Reason.EK_CHAIN_INVALID,
                                  "the policy sets ek_roots and the store records no EK this "
                                  "AK was activated under: enroll it again")])
        # The certificate with its length, then the EK id: a bare concatenation lets a
        # byte move from the EK id to a certificate with trailing bytes.
        key = hashlib.sha256(len(certificate).to_bytes(4, "big") + certificate
                             + ek.encode()).digest()
        if self._ek_checked.get(key, -1) // 3600 == now // 3600:
            return  # checked within this hour: certificates change validity by the day
        try:
            roots = read_certificates(self.policy.ek_roots)
        except UsageError as exc:  # a folder emptied or a file gone since the policy loaded
            raise _Denied([Denial(Reason.EK_CHAIN_INVALID,
                                  f"the policy's ek_roots: {exc.message}")]) from None
        try:
            verified = verify_ek_certificate(certificate, roots, at=_utc(now))
        except EvidenceError as exc:
            raise _Denied([_denial(exc)]) from None
        if ek_id(verified.leaf.public_key) != ek:
            raise _Denied([Denial(Reason.EK_CHAIN_INVALID,
                                  "the enrollment's EK certificate is not for the EK its AK "
                                  "was activated under")])
        remember(self._ek_checked, key, now, AK_CACHE_SIZE)

    def _certification(self, artifact: jws.ParsedArtifact, subject: _Subject,
                       denials: list[Denial]) -> CertifiedKey | None:
        evidence = artifact.claims.evidence
        expected_policy = self.policy.expected_key_policy_digest()
        # Each field with its length: joined with a separator, a byte moved across a
        # boundary (a TPMT_SIGNATURE starts with 0x00) would find another tuple's entry.
        cache_key = hashlib.sha256(b"".join(
            len(field).to_bytes(4, "big") + field
            for field in (evidence.certify, evidence.certify_signature, evidence.key_public,
                          evidence.ak_public, expected_policy))).digest()
        certified = self._certified.get(cache_key)
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
                denials.append(_denial(exc))
                return None
            # Bounded like every cache here: a host may certify as many keys as it likes.
            remember(self._certified, cache_key, certified, AK_CACHE_SIZE)
        if certified.name.hex() != artifact.header.kid:
            denials.append(Denial(Reason.KEY_NOT_CERTIFIED,
                                  "the JWS kid is not the certified key's name"))
            return None
        return certified

    def _quote(self, claims: Claims, bound: bytes, subject: _Subject, view: Snapshot,
               denials: list[Denial]) -> QuoteFacts | None:
        bank = self.policy.pcrs.bank
        if claims.env_bank != bank:
            denials.append(Denial(Reason.POLICY_MISMATCH,
                                  f"the artifact claims {claims.env_bank} PCRs; the policy "
                                  f"quotes {bank}"))
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
            denials.append(_denial(exc))
            return None

    def _epoch(self, quote: QuoteFacts, subject: _Subject, view: Snapshot, now: int,
               denials: list[Denial]) -> None:
        """Place the verified quote's clock among the AK's boots (attest.verify.tpmtime)."""
        misplaced = check_epoch(view.epoch, quote.clock_info,
                                deny_reset=self.policy.freshness.deny_reset)
        if misplaced is None:
            return
        denials.append(misplaced)
        if misplaced.reason is Reason.TPM_RESET:
            # The quote is genuine: the TPM did restart. Recorded, pending re-admission,
            # so that artifacts made before the reset count as an earlier boot's.
            clock = quote.clock_info
            self.store.record_reset(subject.ak_name, SeenClock(
                clock.clock, clock.reset_count, clock.restart_count), now)

    def _logs(self, claims: Claims, quote: QuoteFacts,
              denials: list[Denial]) -> frozenset[str] | None:
        """Check the logs against the quote and the reference values; return the digests
        of the commands they measured when they hold, None (with the denial added) when
        they do not."""
        evidence = claims.evidence
        key = (evidence.encoded("runtime_log"), evidence.encoded("boot_log"))
        view = self._log_views.get(key)
        if view is None:
            view = self._log_view(evidence)
            size = len(key[0]) + len(key[1] or "")
            if self._log_view_chars + size > LOG_CACHE_CHARS:
                self._log_views.clear()
                self._log_view_chars = 0
            self._log_views[key] = view
            self._log_view_chars += size
        if view.problem is not None:
            denials.append(view.problem)
            return None
        quoted = {(b, i): v for b, values in quote.pcrs.items() for i, v in values.items()}
        bank = self.policy.pcrs.bank
        try:
            # The runtime PCR and every appraised boot PCR: a log silent about one of them
            # must reproduce its quoted value from nothing, not leave it "not covered".
            compare_replay(view.events, view.replayed, view.locality, quoted,
                           require=[(bank, i) for i in self.policy.log_sources.must_replay()])
        except EvidenceError as exc:
            denials.append(_denial(exc))
            return None
        if view.appraisal is not None:
            denials.append(view.appraisal)
            return None
        return view.commands

    def _log_view(self, evidence: Evidence) -> _LogView:
        """What the logs say on their own and against the reference values: the part of
        _logs that does not depend on the quote."""
        try:
            runtime = parse_cel(evidence.runtime_log).records
            check_content_bound(runtime)
            boot = None if evidence.boot_log is None else parse_tcg(evidence.boot_log).events
            # Each PCR is explained by the one log the policy appraises for it.
            self.policy.log_sources.check(runtime, boot)
            events: list[TcgEvent | CelRecord] = [*(boot or ()), *runtime]
            replayed = replay(events)
            locality = startup_locality(events)
        except EvidenceError as exc:
            return _LogView.refused(_denial(exc))
        appraisal = None
        if self.policy.reference is not None:
            try:
                appraise(events, self.policy.reference, covered=self.policy.log_sources.covered)
            except EvidenceError as exc:
                appraisal = _denial(exc)
        return _LogView(tuple(events), replayed, locality, None, appraisal,
                        measured_commands(runtime))

    def _times(self, claims: Claims, view: Snapshot, now: int) -> list[Denial]:
        skew = self.policy.freshness.clock_skew
        found: list[Denial] = []
        if claims.nbf > now + skew or claims.iat > now + skew:
            found.append(Denial(Reason.NOT_YET_VALID,
                                f"valid from {claims.nbf} (issued {claims.iat}); now is {now}"))
        if claims.exp + skew < now:
            found.append(Denial(Reason.EXPIRED, f"expired at {claims.exp}; now is {now}"))
        lifetime = self.policy.artifacts.max_lifetime
        if claims.exp - claims.iat > lifetime:
            found.append(Denial(Reason.POLICY_MISMATCH,
                                f"a lifetime of {claims.exp - claims.iat} s exceeds the "
                                f"policy's {lifetime} s"))
        if self.verifier_id is not None and claims.aud not in (None, self.verifier_id):
            found.append(Denial(Reason.POLICY_MISMATCH,
                                f"the artifact is for verifier {claims.aud!r}"))
        found.extend(self._freshness(claims, view, now))
        return found

    def _tpm_time(self, claims: Claims, quote: QuoteFacts, view: Snapshot, now: int,
                  found: list[Denial]) -> list[Denial]:
        """iat and the evidence's age against the TPM clock (see attest.verify.tpmtime);
        a reason already reported for the artifact is not repeated."""
        reported = {denial.reason for denial in found}
        if reported & {Reason.CLOCK_ROLLBACK, Reason.TPM_RESET}:
            return []  # the quote's place among the boots is refused: its clock says nothing
        freshness = self.policy.freshness
        when = quote_time(view.epoch, quote.clock_info, now)
        max_age = None if claims.eat_nonce is not None else freshness.max_age
        return [denial for denial in time_denials(claims.iat, when, now, max_age=max_age,
                                                  skew=freshness.clock_skew,
                                                  challenged_at=view.nonce_issued_at)
                if denial.reason not in reported]

    def _freshness(self, claims: Claims, view: Snapshot, now: int) -> list[Denial]:
        mode = self.policy.freshness.nonce
        if claims.eat_nonce is None:
            if mode is NonceMode.REQUIRED:
                return [Denial(Reason.NONCE_UNKNOWN,
                               "the policy requires a verifier challenge (eat_nonce)")]
            max_age = self.policy.freshness.max_age
            if now - claims.iat > max_age:
                return [Denial(Reason.STALE_EVIDENCE,
                               f"evidence is {now - claims.iat} s old; at most {max_age} s")]
            return []
        if mode is NonceMode.FORBIDDEN:
            return [Denial(Reason.POLICY_MISMATCH, "the policy accepts no nonce")]
        state = view.nonce  # read for this nonce (see _snapshot)
        return [] if state is NonceState.USABLE else [_nonce_denial(state or NonceState.UNKNOWN)]

    def _state(self, artifact: jws.ParsedArtifact, subject: _Subject,
               certified: CertifiedKey | None, view: Snapshot, now: int,
               signed: bool, sealed: SealCheck | None) -> list[Denial]:
        claims = artifact.claims
        found: list[Denial] = []
        if self.policy.artifacts.single_use and view.jti_seen:
            found.append(Denial(Reason.REPLAYED, f"artifact {claims.jti} was already used"))
        # Revocations of the jti, kid, AK and host, most specific first. The key is known
        # once certified (under the header's kid, exactly); the kid is attacker text until
        # then, and an uncertified key is a denial already: its revocation does not count.
        revoked = next((r for r in view.revocations
                        if certified is not None or r.kind is not RevocationKind.KEY), None)
        if revoked is not None:
            # The same words the store uses at commit time: an AK revocation is ak_revoked.
            found.append(_denial(Revoked(revoked)))
        if claims.lineage is not None:
            unsealed = _unsealed_parent(view.parent, sealed)
            if unsealed is not None:
                # Nothing of the row counts (scope, exp, depth, digest): not even parsed.
                found.append(unsealed)
            else:
                found.extend(check_lineage(view.parent, view.parent_revocation,
                                           claims.lineage, claims.scope, claims.exp,
                                           self.policy.lineage, now, match_argv=signed))
        return found

    def _accept(self, artifact: jws.ParsedArtifact, subject: _Subject, certified: CertifiedKey,
                quote: QuoteFacts, facts: dict[str, Any], now: int,
                audit: AuditHook | None) -> Decision:
        claims = artifact.claims
        digest = artifact.sha256
        use = approval_use(self.policy, claims.evidence)
        record = ArtifactRecord(
            jti=claims.jti, sha256=digest,
            parent_jti=claims.lineage.parent if claims.lineage else None,
            depth=claims.lineage.depth if claims.lineage else 0, exp=claims.exp,
            host=subject.host, kid=certified.name.hex(), ak_name=subject.ak_name.hex(),
            subject=claims.sub, scope=json.dumps(claims.scope.to_json(), sort_keys=True),
            approval=None if use is None else use.id)
        clock = SeenClock(quote.clock_info.clock, quote.clock_info.reset_count,
                          quote.clock_info.restart_count)
        # The record goes with the decision to the audit hook, which seals it (its row is
        # what children's lineage rests on: attest.audit.seals).
        decision = Decision(True, jti=claims.jti, subject=claims.sub, host=subject.host,
                            facts=facts, artifact_sha256=digest, record=record)
        indexes: list[int] = []
        hook = None if audit is None else _audit_hook(audit, decision, indexes)
        try:
            self.store.accept(record, nonce=claims.eat_nonce,
                              single_use=self.policy.artifacts.single_use, clock=clock, now=now,
                              in_transaction=hook,
                              approval=use)
        except (Replayed, NonceRejected, Revoked, ApprovalRolledBack, ClockRejected) as exc:
            return Decision(False, (_denial(exc),), jti=claims.jti, subject=claims.sub,
                            host=subject.host)
        except _AuditFailed as exc:
            # The acceptance rolled back with the failed append: nothing was consumed.
            return Decision(False, (Denial(Reason.AUDIT_UNAVAILABLE,
                                           f"the decision could not be logged: {exc}"),),
                            jti=claims.jti, subject=claims.sub, host=subject.host)
        if indexes:
            return Decision(True, jti=claims.jti, subject=claims.sub, host=subject.host,
                            facts=facts, audit_index=indexes[0], artifact_sha256=digest)
        return decision


def _unsealed_parent(parent: ArtifactRecord | None, sealed: SealCheck | None) -> Denial | None:
    """lineage_broken when the parent's row lacks this verifier's seal (attest.audit.seals),
    or a named denial when the seal cannot be checked; None when it holds, when there is
    no parent row (check_lineage denies that) or no check (a plain Verifier trusts its
    store: docs/threat-model.md, class 15)."""
    if parent is None or sealed is None:
        return None
    try:
        genuine = sealed(parent)
    except AttestError as exc:  # the key is out of reach: named, never skipped
        return _denial(exc)
    if genuine:
        return None
    return Denial(Reason.LINEAGE_BROKEN,
                  f"the parent {parent.jti}'s record was not written by this verifier (it "
                  "lacks the verifier's seal, or the row was changed since): reissue the "
                  "parent")


def _audit_hook(audit: AuditHook, decision: Decision,
                indexes: list[int]) -> Callable[[Any], None]:
    """The store's in-transaction callback: append ``decision``, or raise _AuditFailed."""
    def append(conn: Any) -> None:
        try:
            indexes.append(audit(decision, conn))
        except Exception as exc:
            # Whatever failed, the decision is unlogged: audit_unavailable, not internal_error.
            raise _AuditFailed(f"{type(exc).__name__}: {exc}") from exc
    return append


def _collect(denials: list[Denial], check: Callable[[], object]) -> None:
    try:
        check()
    except EvidenceError as exc:
        denials.append(_denial(exc))


def _denial(exc: AttestError) -> Denial:
    return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)


def _nonce_denial(state: NonceState) -> Denial:
    if state is NonceState.USED:
        return Denial(Reason.NONCE_REUSED, "the challenge was already used")
    if state is NonceState.EXPIRED:
        return Denial(Reason.STALE_EVIDENCE, "the challenge expired")
    return Denial(Reason.NONCE_UNKNOWN, "this verifier never issued that challenge")


def _utc(now: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(now, UTC)


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
