"""Attestation results: a verifier's decision as an EAR (EAT Attestation Result), an
ES256 JWT a relying party checks offline.

The shape follows draft-ietf-rats-ear (https://datatracker.ietf.org/doc/draft-ietf-rats-ear/)
and Veraison's JWT profile of it (github.com/veraison/ear), restated, not copied:

    {"eat_profile": "tag:github.com,2023:veraison/ear", "iat": ..., "exp": ...,
     "jti": "<the result's own id>", "eat_nonce": "<the artifact's nonce>",
     "ear.verifier-id": {"developer": "attest", "build": "attest <version>"},
     "submods": {"attest": {
        "ear.status": "affirming" | "contraindicated",
        "ear.trustworthiness-vector": {...AR4SI claims: attest.ear.vector},
        "ear.appraisal-policy-id": "<policy id>#sha256:<policy digest>",
        "attest.policy": {"id", "digest"},
        "attest.artifact": {"jti", "sha256": <of the exact bytes verified>,
                            "id": <the audit log's name for it: SHA-256 of the JWS
                                   signing input>},
        "attest.host", "attest.subject", "attest.reasons": [codes],
        "attest.audit": <the receipt: attest.audit.proofs.InclusionProof JSON>}}}

The receipt is the decision's audit entry (its exact leaf bytes), the inclusion proof
of that leaf in a tree head, and the head itself, signed by the log key (a C2SP
checkpoint): :func:`check_receipt` proves offline, with the log's verifier key alone,
that THIS decision (its index, jti, artifact, outcome, reasons) was logged.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from attest import __version__, timetext
from attest.decision import Decision
from attest.ear import token
from attest.ear.vector import Claim, Status, status_for, vector_for
from attest.errors import AttestError, EvidenceError
from attest.fieldtext import fit
from attest.reasons import Reason

if TYPE_CHECKING:  # a relying party reads results without importing the audit log
    from attest.audit.note import Checkpoint, VerifierKey
    from attest.audit.proofs import InclusionProof

PROFILE = "tag:github.com,2023:veraison/ear"
SUBMOD = "attest"
DEVELOPER = "attest"
DEFAULT_TTL_S = 300
# How far a result's iat may lie ahead of the relying party's clock.
DEFAULT_SKEW_S = 60


@dataclass(frozen=True)
class Subject:
    """What the result is about, beyond the decision: the exact bytes verified."""

    raw: bytes
    nonce: str | None = None


def issue(decision: Decision, subject: Subject, *, key: ec.EllipticCurvePrivateKey,
          policy_id: str, policy_digest: str, receipt: InclusionProof | None, now: int,
          ttl: int = DEFAULT_TTL_S) -> str:
    """The signed EAR for ``decision`` on ``subject.raw``."""
    vector = vector_for(decision.accepted, (d.reason for d in decision.denials))
    submod: dict[str, Any] = {
        "ear.status": status_for(decision.accepted).value,
        "ear.trustworthiness-vector": {claim.value: value for claim, value in vector.items()},
        "ear.appraisal-policy-id": f"{policy_id}#sha256:{policy_digest}",
        "attest.policy": {"id": policy_id, "digest": policy_digest},
        # Bounded as the audit entry bounds them (attest.audit.entry.fit): host-chosen.
        "attest.artifact": {"jti": fit(decision.jti),
                            "sha256": hashlib.sha256(subject.raw).hexdigest(),
                            "id": decision.artifact_sha256 or _identity(subject.raw)},
        "attest.host": fit(decision.host),
        "attest.subject": fit(decision.subject),
        "attest.reasons": list(decision.reasons),
        "attest.audit": None if receipt is None else receipt.to_json(),
    }
    claims: dict[str, Any] = {
        "eat_profile": PROFILE, "iat": now, "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
        "ear.verifier-id": {"developer": DEVELOPER, "build": f"attest {__version__}"},
        "submods": {SUBMOD: submod},
    }
    if subject.nonce is not None:
        claims["eat_nonce"] = subject.nonce
    return token.sign(claims, key)


@dataclass(frozen=True)
class Result:
    """An attestation result whose signature, profile, times and shape were checked."""

    claims: dict[str, Any]
    status: Status
    jti: str
    issued_at: int
    expires: int
    nonce: str | None
    artifact_jti: str | None
    artifact_sha256: str
    artifact_id: str
    host: str | None
    subject: str | None
    reasons: tuple[str, ...]
    vector: dict[str, int]
    policy_id: str
    receipt: dict[str, Any] | None

    @property
    def affirming(self) -> bool:
        return self.status is Status.AFFIRMING

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "jti": self.jti, "iat": self.issued_at,
                "exp": self.expires, "eat_nonce": self.nonce,
                "artifact": {"jti": self.artifact_jti, "sha256": self.artifact_sha256,
                             "id": self.artifact_id},
                "host": self.host, "subject": self.subject, "reasons": list(self.reasons),
                "trustworthiness_vector": self.vector,
                "appraisal_policy_id": self.policy_id,
                "audit_index": None if self.receipt is None else self.receipt.get("index")}


def read(text: str | bytes, keys: Sequence[ec.EllipticCurvePublicKey], *, now: int,
         skew: int = DEFAULT_SKEW_S) -> Result:
    """The result ``text`` once signed by one of ``keys``, of attest's EAR profile,
    issued no later than ``now + skew`` and unexpired at ``now``. EvidenceError (with
    its reason) otherwise: a result that is not all of these says nothing."""
    opened = token.open_token(text, keys)
    claims = opened.claims
    if claims.get("eat_profile") != PROFILE:
        raise _malformed(f"the result's eat_profile is not {PROFILE}")
    iat, exp = _int(claims, "iat"), _int(claims, "exp")
    if iat > now + skew:
        raise EvidenceError(f"the result was issued in the future, at "
                            f"{timetext.moment(iat, now)}",
                            reason=Reason.NOT_YET_VALID)
    if now >= exp:
        raise EvidenceError(f"the result expired at {timetext.moment(exp, now)}",
                            reason=Reason.EXPIRED)
    submods = claims.get("submods")
    if not isinstance(submods, dict) or set(submods) != {SUBMOD}:
        raise _malformed(f"the result has no single submod {SUBMOD!r}")
    submod = submods[SUBMOD]
    if not isinstance(submod, dict):
        raise _malformed(f"the result's submod {SUBMOD!r} is not an object")
    try:
        status = Status(str(submod.get("ear.status")))
    except ValueError:
        raise _malformed("the result's ear.status is not an EAR status") from None
    artifact = submod.get("attest.artifact")
    vector = submod.get("ear.trustworthiness-vector")
    reasons = submod.get("attest.reasons")
    receipt = submod.get("attest.audit")
    if (not isinstance(artifact, dict) or not isinstance(vector, dict)
            or not set(vector) <= {c.value for c in Claim}
            or not all(type(v) is int for v in vector.values())
            or not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons)
            or not (receipt is None or isinstance(receipt, dict))):
        raise _malformed("the result's attest claims are not of attest's shape")
    if status is Status.AFFIRMING and reasons:
        raise _malformed("an affirming result names denial reasons")
    nonce = claims.get("eat_nonce")
    return Result(
        claims=claims, status=status, jti=_str(claims, "jti"), issued_at=iat, expires=exp,
        nonce=nonce if isinstance(nonce, str) else None,
        artifact_jti=_optional(artifact, "jti"), artifact_sha256=_str(artifact, "sha256"),
        artifact_id=_str(artifact, "id"), host=_optional(submod, "attest.host"),
        subject=_optional(submod, "attest.subject"), reasons=tuple(reasons),
        vector=dict(vector), policy_id=_str(submod, "ear.appraisal-policy-id"),
        receipt=receipt)


def check_receipt(result: Result, log_key: VerifierKey) -> Checkpoint:
    """The checkpoint, signed by ``log_key``, whose tree holds this result's decision:
    the receipt's proof verifies, its entry hashes to the proven leaf, and the entry
    is a decision on this artifact with this outcome and these reasons.
    EvidenceError (proof_invalid) otherwise."""
    from attest.audit.proofs import InclusionProof

    if result.receipt is None:
        raise EvidenceError("the result carries no audit receipt: the decision was not "
                            "logged", reason=Reason.PROOF_INVALID)
    try:
        proof = InclusionProof.from_json(result.receipt)
        head = proof.verify(log_key)
    except AttestError as exc:
        raise EvidenceError(f"the result's audit receipt does not verify: {exc.message}",
                            reason=Reason.PROOF_INVALID) from None
    if proof.entry is None:
        raise EvidenceError("the result's audit receipt holds no entry",
                            reason=Reason.PROOF_INVALID)
    _check_entry(result, proof)
    return head


def _check_entry(result: Result, proof: InclusionProof) -> None:
    from attest import strictjson
    from attest.audit.entry import EntryKind, Outcome

    assert proof.entry is not None  # noqa: S101 - checked by the caller
    try:
        entry = strictjson.loads(proof.entry)
    except (ValueError, RecursionError):
        entry = None
    outcome = Outcome.ACCEPTED if result.affirming else Outcome.DENIED
    expected = {"index": proof.index, "kind": EntryKind.DECISION.value,
                "decision": outcome.value, "jti": result.artifact_jti,
                "artifact": result.artifact_id, "host": result.host,
                "subject": result.subject, "reasons": list(result.reasons)}
    if not isinstance(entry, dict):
        raise EvidenceError("the receipt's entry is not JSON", reason=Reason.PROOF_INVALID)
    wrong = sorted(name for name, value in expected.items() if entry.get(name) != value)
    if wrong:
        raise EvidenceError(f"the logged entry is not this result's decision (it differs "
                            f"in {', '.join(wrong)})", reason=Reason.PROOF_INVALID)


def check_bound(result: Result, *, artifact: bytes, nonce: str | None) -> None:
    """EvidenceError (binding_mismatch) unless ``result`` is about exactly ``artifact``
    (its bytes' SHA-256, its identity and jti) and ``nonce``."""
    from attest.artifact import jws

    problems = []
    if result.artifact_sha256 != hashlib.sha256(artifact).hexdigest():
        problems.append("the artifact's SHA-256")
    if result.artifact_id != jws.identity(artifact):
        problems.append("the artifact's identity")
    try:
        jti = jws.parse(artifact).claims.jti
    except EvidenceError:
        jti = None
    if jti is None or result.artifact_jti != fit(jti):
        problems.append("the artifact's jti")
    if result.nonce != nonce:
        problems.append("the nonce")
    if problems:
        raise EvidenceError(f"the result is about another request: {', '.join(problems)} "
                            "differ", reason=Reason.BINDING_MISMATCH)


def require_affirming(result: Result) -> None:
    """EvidenceError unless ``result`` affirms: with the first reason it names (or
    internal_error for a non-affirming result that names none)."""
    if result.affirming:
        return
    reason = Reason.INTERNAL_ERROR
    for code in result.reasons:
        try:
            reason = Reason(code)
            break
        except ValueError:
            continue
    raise EvidenceError(f"the verifier's result is {result.status.value}"
                        + (f": {', '.join(result.reasons)}" if result.reasons else ""),
                        reason=reason)


def _identity(raw: bytes) -> str:
    from attest.artifact import jws

    return jws.identity(raw)


def _int(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if type(value) is not int:
        raise _malformed(f"the result's {name} is not an integer")
    return value


def _str(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise _malformed(f"the result's {name} is not a string")
    return value


def _optional(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise _malformed(f"the result's {name} is not a string")
    return value


def _malformed(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.MALFORMED_ARTIFACT)
