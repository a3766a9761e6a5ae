"""Verifying a signature bundle (attest.signing.bundle) offline: a pure function of the
bundle, the files it is shown with, the policy, its trust material and ``now``.

No TSS, no store, no clock: the AK must be one of the policy's ``trusted_aks``
(``enrollment: policy``). The pieces are the artifact verifier's (attest.evidence's
certification and quote checks, attest.verify.appraisal's log view), applied to what a
bundle binds. Checks, each yielding its denials (one idiom with attest.verify.appraisal):

1. The bundle parses strictly: malformed_artifact; a batched bundle's inclusion proof
   puts SHA-256(PAE) under the batch root: batch_proof_invalid.
2. The AK is trusted by the policy and a restricted TPM key: ak_unknown,
   key_attributes_invalid.
3. The signing key is certified by that AK with the policy's authPolicy:
   key_not_certified, certify_signature_invalid, key_attributes_invalid,
   key_policy_mismatch. With key_policy kind authorize, the bundle's approval
   (attest.verify.approvals, the artifacts' check): key_policy_mismatch.
4. The DSSE signature (DER ECDSA over the PAE; batched, over the batch value) verifies
   with the certified key, whose name is the envelope's keyid: invalid_signature,
   key_not_certified.
5. The quote: AK signature, qualifyingData == quote_binding(what the key signed, time, EK ids,
   logs, key name), the policy's PCRs, pcrDigest over the bundle's PCR values:
   quote_malformed, quote_signature_invalid, binding_mismatch, pcr_*.
6. The logs replay to the quoted PCRs and hold only what the reference values allow:
   eventlog_malformed, eventlog_mismatch, reference_value_mismatch.
7. Time: signed no later than now (+ skew): not_yet_valid.
8. Each file shown is the payload, or a subject of the signed statement (parsed only once
   the key's signature over it verified): payload_mismatch, malformed_artifact.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from attest import timetext
from attest.artifact.model import CERTIFICATION_LABEL, Evidence
from attest.decision import Decision, Denial
from attest.errors import AttestError, BatchProofError, EvidenceError
from attest.evidence.ak import check_ak
from attest.evidence.certify import CertifiedKey, verify_certification
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.structures import Public, parse_public_tpm2b
from attest.policy.model import EnrollmentMode, VerifierPolicy
from attest.reasons import Reason
from attest.signing import batch
from attest.signing.bundle import P256_ORDER, Bundle, pae_digest, quote_binding
from attest.signing.statement import PAYLOAD_TYPE as STATEMENT_PAYLOAD_TYPE
from attest.signing.statement import Statement
from attest.verify.appraisal import log_denial, view_logs
from attest.verify.approvals import check_approval

T = TypeVar("T")
Check = Generator[Denial, None, T]


@dataclass(frozen=True)
class ShownFile:
    """A file the consumer holds, to match against what was signed."""

    name: str
    sha256: bytes


def verify_bundle(data: bytes, policy: VerifierPolicy, now: int,
                  files: Sequence[ShownFile] = ()) -> Decision:
    """The decision on bundle ``data`` under ``policy`` at ``now`` (Unix seconds), with
    ``files`` to match against the payload. Never raises for a bundle: anything that
    raises inside is a denial (internal_error)."""
    found: list[Denial] = []
    try:
        facts = _drain(_checks(data, policy, now, files), found)
    except Exception as exc:  # noqa: BLE001 - fail closed: a bug denies, never accepts
        found.append(Denial(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
        facts = None
    if not found and facts is None:
        found.append(Denial(Reason.INTERNAL_ERROR, "a check failed without a reason"))
    if found or facts is None:
        return Decision(False, tuple(found), host=None if facts is None else facts["host"])
    return Decision(True, (), host=facts["host"], facts=facts)


def _drain(check: Check[T], found: list[Denial]) -> T:
    while True:
        try:
            found.append(next(check))
        except StopIteration as done:
            value: T = done.value
            return value


def _denial(exc: AttestError) -> Denial:
    return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)


def _checks(data: bytes, policy: VerifierPolicy, now: int,
            files: Sequence[ShownFile]) -> Check[dict[str, Any] | None]:
    try:
        bundle = Bundle.from_bytes(data)
    except (EvidenceError, BatchProofError) as exc:
        yield _denial(exc)
        return None
    try:
        # What the key signed: SHA-256(PAE) alone, or the batch value once the inclusion
        # proof has put this PAE under the batch's root (signed_value checks it first).
        signed = (pae_digest(bundle.pae) if bundle.batch is None
                  else batch.signed_value(bundle.pae, bundle.batch))
    except BatchProofError as exc:
        yield _denial(exc)
        return None
    trusted = yield from _ak(bundle, policy)
    if trusted is None:
        return None
    host, ak, signer = trusted
    certified = yield from _certification(bundle, policy, ak, signer)
    signed_by_key = False
    if certified is not None:
        signed_by_key = yield from _signature(bundle, certified, signed)
    # A statement is JSON of up to 4 MiB: parsed only once the certified key has signed
    # it, so that anyone's payload does not get the parser's time and memory.
    statement: Statement | None = None
    if bundle.envelope.payload_type == STATEMENT_PAYLOAD_TYPE and signed_by_key:
        try:
            statement = Statement.from_bytes(bundle.envelope.payload)
        except EvidenceError as exc:
            yield _denial(exc)  # and no file can match it
    key_name = (certified.name if certified is not None
                else _key_name(bundle.key_public))
    quote = yield from _quote(bundle, policy, ak, signer, key_name, signed)
    if certified is not None:  # an approval means something only for the policy's key
        # The artifacts' check, on the bundle's approval: the authority's, approving the
        # quoted sealed PCRs, unexpired now, not retired. (Offline: no store, so no
        # per-AK serial mark and no store revocation of approvals.)
        yield from check_approval(policy, _as_evidence(bundle), quote, now, None)
    if quote is not None:
        denial = log_denial(view_logs(bundle.runtime_log, bundle.boot_log, policy,
                                      with_state=False), quote, policy)
        if denial is not None:
            yield denial
    skew = policy.freshness.clock_skew
    if bundle.time > now + skew:
        yield Denial(Reason.NOT_YET_VALID, f"signed at {timetext.moment(bundle.time, now)}")
    if bundle.envelope.payload_type != STATEMENT_PAYLOAD_TYPE or statement is not None:
        yield from _files(bundle, statement, files)
    if quote is None or certified is None or not signed_by_key:
        return None
    return {
        "host": host,
        "ak": ak.name.hex(),
        "key": certified.name.hex(),
        "payload_type": bundle.envelope.payload_type,
        "payload_sha256": hashlib.sha256(bundle.envelope.payload).hexdigest(),
        "subjects": None if statement is None else [
            {"name": s.name, "sha256": s.sha256} for s in statement.subjects],
        "time": bundle.time,
        "batch": None if bundle.batch is None else {
            "index": bundle.batch.index, "size": bundle.batch.size,
            "root": bundle.batch.root.hex()},
        "pcrs": {bank: {str(i): v.hex() for i, v in sorted(values.items())}
                 for bank, values in quote.pcrs.items()},
        "clock": quote.clock_info.clock,
        "files": [f.name for f in files],
        # Which subjects each file is: a statement names files by digest, so a file shown
        # under one name may be the signed bytes of another (an older release, another
        # platform's build); the operator sees the names the signer gave.
        "matched": None if statement is None else _matched(statement, files),
    }


MAX_MATCHED_NAMES = 8


def _matched(statement: Statement, files: Sequence[ShownFile]) -> list[dict[str, Any]]:
    names: dict[str, list[str]] = {}
    for subject in statement.subjects:
        names.setdefault(subject.sha256, []).append(subject.name)
    return [{"file": f.name, "subjects": names.get(f.sha256.hex(), [])[:MAX_MATCHED_NAMES]}
            for f in files]


def _as_evidence(bundle: Bundle) -> Evidence:
    return Evidence(quote=bundle.quote, quote_signature=bundle.quote_signature,
                    key_public=bundle.key_public, certify=bundle.certify,
                    certify_signature=bundle.certify_signature, ak_public=bundle.ak_public,
                    runtime_log=bundle.runtime_log, boot_log=bundle.boot_log,
                    approval=bundle.approval)


def _key_name(key_public: bytes) -> bytes:
    try:
        return parse_public_tpm2b(key_public).name
    except EvidenceError:
        return b""  # the certification check has denied it already


def _ak(bundle: Bundle, policy: VerifierPolicy) -> Check[tuple[str, Public, bytes] | None]:
    """The policy's host for the bundle's AK, the AK, and the qualified name its quotes and
    certifications carry (the policy's when it names one)."""
    try:
        ak = parse_public_tpm2b(bundle.ak_public)
    except EvidenceError as exc:
        yield Denial(Reason.MALFORMED_ARTIFACT, f"ak.public: {exc.message}")
        return None
    if policy.enrollment is not EnrollmentMode.POLICY:
        yield Denial(Reason.AK_UNKNOWN,
                     "offline signature verification trusts the policy's trusted_aks "
                     "(enrollment: policy); this policy trusts a verifier's store")
        return None
    trusted = policy.trusted_ak(ak.name)
    if trusted is None:
        yield Denial(Reason.AK_UNKNOWN,
                     f"AK {ak.name.hex()[:16]}… is not among the policy's trusted_aks")
        return None
    try:
        check_ak(ak)
    except EvidenceError as exc:
        yield _denial(exc)
        return None
    signer = trusted.ak_qualified_name or None
    if signer is not None and not hmac.compare_digest(signer, bundle.ak_qualified_name):
        yield Denial(Reason.AK_UNKNOWN,
                     "ak.qualified_name is not the one the policy trusts for this AK")
        return None
    # Without the policy's, the bundle's own: the quote and certification must carry it.
    return trusted.host, ak, signer or bundle.ak_qualified_name


def _certification(bundle: Bundle, policy: VerifierPolicy, ak: Public,
                   signer: bytes) -> Check[CertifiedKey | None]:
    try:
        key = parse_public_tpm2b(bundle.key_public)  # parsed once, checked below
        return verify_certification(
            bundle.certify, bundle.certify_signature, ak, key,
            expected_policy=policy.expected_key_policy_digest(),
            expected_extra_data=hashlib.sha256(
                CERTIFICATION_LABEL + key.name + ak.name).digest(),
            expected_signer=signer)
    except EvidenceError as exc:
        yield _denial(exc)
        return None


def _signature(bundle: Bundle, certified: CertifiedKey, signed: bytes) -> Check[bool]:
    """Whether the certified key signed ``signed``; a denial when not."""
    if bundle.keyid != certified.name.hex():
        yield Denial(Reason.KEY_NOT_CERTIFIED,
                     "the envelope's keyid is not the certified key's name")
        return False
    key = certified.key
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        yield Denial(Reason.KEY_ATTRIBUTES_INVALID, "the signing key is not ECDSA P-256")
        return False
    try:
        # DER is one encoding per (r, s): a re-encoded signature must be the bytes sent.
        r, s = decode_dss_signature(bundle.signature)
        if encode_dss_signature(r, s) != bundle.signature:
            raise ValueError("not DER")
        if s > P256_ORDER // 2:  # the other form of a valid signature: one form only
            raise ValueError("high S")
        # ``signed`` is SHA-256(PAE) (unbatched: the standard ECDSA-with-SHA-256 over the
        # PAE) or the batch value, a digest the TPM signed as given.
        key.verify(bundle.signature, signed, ec.ECDSA(Prehashed(hashes.SHA256())))
    except (InvalidSignature, ValueError):
        yield Denial(Reason.INVALID_SIGNATURE,
                     "the DSSE signature does not verify over the envelope's PAE with the "
                     "certified key" if bundle.batch is None else
                     "the batch signature does not verify over the batch's root and size "
                     "with the certified key")
        return False
    return True


def _quote(bundle: Bundle, policy: VerifierPolicy, ak: Public, signer: bytes,
           key_name: bytes, signed: bytes) -> Check[QuoteFacts | None]:
    bank = policy.pcrs.bank
    if bundle.bank != bank:
        yield Denial(Reason.POLICY_MISMATCH,
                     f"the bundle quotes {bundle.bank} PCRs; the policy {bank}")
        return None
    bound = quote_binding(signed, bundle.time, key_name, bundle.eks,
                          bundle.runtime_log, bundle.boot_log, bundle.approval)
    try:
        quote = verify_quote(
            bundle.quote, bundle.quote_signature, ak, expected_extra_data=bound,
            pcr_values={(bank, i): v for i, v in bundle.pcrs.items()},
            required_pcrs=policy.required_pcrs, expected_signer=signer)
    except EvidenceError as exc:
        yield _denial(exc)
        return None
    # Values outside the quote's selection would be carried unchecked: none may be.
    if set(quote.pcrs.get(bank, {})) != set(bundle.pcrs):
        yield Denial(Reason.PCR_DIGEST_MISMATCH,
                     "quote.pcrs names PCRs the quote did not select")
        return None
    return quote


def _files(bundle: Bundle, statement: Statement | None,
           files: Sequence[ShownFile]) -> Check[None]:
    if statement is None:
        signed = hashlib.sha256(bundle.envelope.payload).digest()
        for shown in files:
            if not hmac.compare_digest(shown.sha256, signed):
                yield Denial(Reason.PAYLOAD_MISMATCH,
                             f"{shown.name} is not the signed payload")
        return
    subjects = {s.sha256 for s in statement.subjects}
    for shown in files:
        if shown.sha256.hex() not in subjects:
            yield Denial(Reason.PAYLOAD_MISMATCH,
                         f"{shown.name} (sha256 {shown.sha256.hex()[:16]}…) is not a subject "
                         "of the signed statement")
