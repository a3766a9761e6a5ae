"""JWS compact serialization (RFC 7515) with ES256 (RFC 7518, 3.4), for artifacts.

The signature is made inside the TPM (the key never leaves it), so signing is
split: :func:`signing_input` gives the bytes, the TPM signs SHA-256 of them, and
:func:`assemble` joins the parts. ES256 signatures are R || S, 32 bytes each,
not DER.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from attest import strictjson
from attest.artifact.model import (
    ALGORITHM,
    ARTIFACT_TYPE,
    MAX_ARTIFACT_BYTES,
    Claims,
    b64url,
    malformed,
    unb64url,
)
from attest.errors import EvidenceError
from attest.memo import remember
from attest.reasons import Reason


@dataclass(frozen=True)
class Header:
    alg: str
    typ: str
    kid: str  # the signing key's TPM name, hex

    def to_json(self) -> dict[str, str]:
        return {"alg": self.alg, "typ": self.typ, "kid": self.kid}


@dataclass(frozen=True)
class ParsedArtifact:
    """An artifact split and decoded, nothing verified yet."""

    raw: bytes
    header: Header
    claims: Claims
    signing_input: bytes
    signature: bytes  # R || S

    @property
    def sha256(self) -> str:
        """The artifact's identity: SHA-256 of the JWS signing input (header.payload).

        What a child names as its parent (lineage.parent_sha256) and what the store keeps.
        Not the whole serialization: anyone can turn an ECDSA signature (r, s) into a
        second valid one (r, n - s) without the key, so a digest over signature bytes
        would let a bystander present a twin of different identity first.
        """
        return hashlib.sha256(self.signing_input).hexdigest()


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode("utf-8")


def identity(raw: bytes) -> str:
    """:attr:`ParsedArtifact.sha256` of bytes that may not parse: SHA-256 of the signing
    input when they have the compact form's three parts, else of the bytes (stripped),
    so that a denial names an artifact as its acceptance would."""
    text = raw.strip()
    if len(text) <= MAX_ARTIFACT_BYTES and text.count(b".") == 2:
        text = text[:text.rindex(b".")]
    return hashlib.sha256(text).hexdigest()


def signing_input(header: Header, claims: Claims) -> bytes:
    """ASCII(BASE64URL(header) || '.' || BASE64URL(payload)): what ES256 signs."""
    return (b64url(_encode_json(header.to_json())) + "."
            + b64url(_encode_json(claims.to_json()))).encode("ascii")


# The order of P-256's base point: s and n - s both verify, so only s <= n/2 is valid.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(signature_rs: bytes) -> bytes:
    """R || S with S replaced by n - S when S is in the upper half (a TPM returns either)."""
    s = int.from_bytes(signature_rs[32:], "big")
    if s > P256_ORDER // 2:
        return signature_rs[:32] + (P256_ORDER - s).to_bytes(32, "big")
    return signature_rs


def assemble(signing: bytes, signature_rs: bytes) -> bytes:
    """The compact JWS; its signature normalized to low S, the only form verifiers take."""
    if len(signature_rs) != 64:
        raise ValueError("an ES256 signature is 64 bytes (R || S)")
    return signing + b"." + b64url(low_s(signature_rs)).encode("ascii")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = strictjson.loads(data)
    except strictjson.StrictJSONError as exc:
        raise malformed(f"the {what} is not strict JSON: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise malformed(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise malformed(f"the {what} is not a JSON object")
    return value


def parse_header(header_b64: str) -> Header:
    """The JWS protected header; raise EvidenceError (malformed_artifact, alg_not_allowed)."""
    header_obj = _json_object(unb64url(header_b64, "JWS header"), "JWS header")
    extra = sorted(set(header_obj) - {"alg", "typ", "kid"})
    if extra:
        # "crit" and friends would change the meaning of the signature: refuse them.
        raise malformed(f"unexpected JWS header members: {', '.join(extra)}")
    alg = header_obj.get("alg")
    if alg != ALGORITHM:
        raise EvidenceError(f"JWS alg {alg!r} is not allowed; artifacts are {ALGORITHM}",
                            reason=Reason.ALG_NOT_ALLOWED)
    if header_obj.get("typ") != ARTIFACT_TYPE:
        raise malformed(f"JWS typ is {header_obj.get('typ')!r}, not {ARTIFACT_TYPE!r}")
    kid = header_obj.get("kid")
    if not isinstance(kid, str) or not kid:
        raise malformed("JWS header has no kid")
    return Header(alg, ARTIFACT_TYPE, kid)


# One signing key's artifacts share one header text: parse each text once. Bounded in
# count and in length, since header texts come from whoever sends artifacts (attest's
# are ~150 characters); a header that fails to parse is not kept (it raises again).
_HEADERS: dict[str, Header] = {}
HEADER_CACHE_SIZE = 256
HEADER_CACHE_MAX_CHARS = 1024


def _header(header_b64: str) -> Header:
    header = _HEADERS.get(header_b64)
    if header is None:
        header = parse_header(header_b64)
        if len(header_b64) <= HEADER_CACHE_MAX_CHARS:
            remember(_HEADERS, header_b64, header, HEADER_CACHE_SIZE)
    return header


def parse(raw: bytes) -> ParsedArtifact:
    """Split and decode an artifact; raise EvidenceError (malformed_artifact, alg_not_allowed)."""
    if len(raw) > MAX_ARTIFACT_BYTES:
        raise malformed(f"the artifact is {len(raw)} bytes; at most {MAX_ARTIFACT_BYTES}")
    text = raw.strip()
    parts = text.split(b".")
    if len(parts) != 3:
        raise malformed("not a JWS in compact serialization (three base64url parts)")
    try:
        header_b64, payload_b64, signature_b64 = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError:
        raise malformed("the JWS holds non-ASCII bytes") from None
    header = _header(header_b64)
    claims = Claims.from_json(_json_object(unb64url(payload_b64, "JWS payload"), "JWS payload"))
    signature = unb64url(signature_b64, "JWS signature")
    if len(signature) != 64:
        raise malformed(f"an ES256 signature is 64 bytes, not {len(signature)}")
    return ParsedArtifact(text, header, claims, text[:len(header_b64) + 1 + len(payload_b64)],
                          signature)


def verify_signature(artifact: ParsedArtifact, key: object) -> None:
    """Raise EvidenceError(invalid_signature) unless the JWS verifies with ``key`` (P-256)."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise EvidenceError("the signing key is not P-256, as ES256 requires",
                            reason=Reason.ALG_NOT_ALLOWED)
    r = int.from_bytes(artifact.signature[:32], "big")
    s = int.from_bytes(artifact.signature[32:], "big")
    if s > P256_ORDER // 2:
        # The high-S twin of a valid signature verifies too; one artifact has one form.
        raise EvidenceError("the JWS signature is not in low-S form (s > n/2)",
                            reason=Reason.INVALID_SIGNATURE)
    digest = hashlib.sha256(artifact.signing_input).digest()
    try:
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise EvidenceError("the JWS signature does not verify with the certified key",
                            reason=Reason.INVALID_SIGNATURE) from None
