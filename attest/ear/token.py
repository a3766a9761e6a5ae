"""ES256 JWTs (RFC 7519) in compact JWS form (RFC 7515), signed and checked with
``cryptography``: what carries an attestation result.

Only ES256 with a P-256 key is made or taken (no ``alg`` negotiation: a header naming
anything else is refused, ``none`` included). Keys are named by their RFC 7638 JWK
thumbprint (the ``kid``), so a relying party that trusts several verifier keys finds
the one that signed. Signatures are R || S; attest makes them low S, as its artifacts
are, and takes either (other libraries make high S half the time).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attest import strictjson
from attest.artifact.jws import low_s
from attest.artifact.model import b64url, unb64url
from attest.errors import EvidenceError
from attest.reasons import Reason

ALG = "ES256"
TYP = "JWT"
# A result carries a receipt: a few kilobytes; host-chosen fields are bounded (1024
# characters each, twice: in the claims and in the logged entry). Anything far larger
# is refused unparsed.
MAX_TOKEN_BYTES = 256 * 1024
_COORD = 32


def jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK of a P-256 key (RFC 7518 section 6.2), with its ``kid``."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("a result key is ECDSA P-256")
    numbers = key.public_numbers()
    members = {"crv": "P-256", "kty": "EC",
               "x": b64url(numbers.x.to_bytes(_COORD, "big")),
               "y": b64url(numbers.y.to_bytes(_COORD, "big"))}
    return {**members, "kid": thumbprint(key), "alg": ALG, "use": "sig"}


def thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexical order, no whitespace."""
    numbers = key.public_numbers()
    required = (f'{{"crv":"P-256","kty":"EC","x":"{b64url(numbers.x.to_bytes(_COORD, "big"))}"'
                f',"y":"{b64url(numbers.y.to_bytes(_COORD, "big"))}"}}')
    return b64url(hashlib.sha256(required.encode("ascii")).digest())


def sign(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """The compact JWS of ``claims`` signed by ``key`` (ES256)."""
    header = {"alg": ALG, "typ": TYP, "kid": thumbprint(key.public_key())}
    signing = (_part(header) + "." + _part(claims)).encode("ascii")
    r, s = decode_dss_signature(key.sign(signing, ec.ECDSA(hashes.SHA256())))
    raw = low_s(r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big"))
    return signing.decode("ascii") + "." + b64url(raw)


@dataclass(frozen=True)
class Opened:
    header: dict[str, Any]
    claims: dict[str, Any]
    key: ec.EllipticCurvePublicKey  # the trusted key that signed


def open_token(token: str | bytes, keys: Sequence[ec.EllipticCurvePublicKey]) -> Opened:
    """The header and claims of ``token`` once its ES256 signature verifies with one of
    ``keys``. EvidenceError otherwise: ``malformed_artifact`` for what is not a compact
    JWS of JSON objects, ``alg_not_allowed`` for another algorithm, ``invalid_signature``
    for a signature no trusted key made."""
    text = token.strip() if isinstance(token, str) else token.strip().decode("ascii", "replace")
    if len(text) > MAX_TOKEN_BYTES:
        raise _malformed(f"the result is larger than {MAX_TOKEN_BYTES} bytes")
    parts = text.split(".")
    if len(parts) != 3:
        raise _malformed("the result is not a compact JWS (three dot-separated parts)")
    header = _object(parts[0], "header")
    if header.get("alg") != ALG:
        raise EvidenceError(f"the result is signed with {str(header.get('alg'))[:40]!r}; "
                            f"only {ALG} is accepted", reason=Reason.ALG_NOT_ALLOWED)
    if header.get("typ", TYP) != TYP or "crit" in header:
        raise _malformed("the result's header is not a plain JWT's")
    claims = _object(parts[1], "claims")
    signature = unb64url(parts[2], "the result's signature")
    # High S is taken: other JOSE libraries (PyJWT) make it half the time, and nothing
    # names a result by its signature bytes (it has its own jti), so a twin is harmless.
    if len(signature) != 2 * _COORD:
        raise EvidenceError("the result's signature is not an ES256 signature (R || S)",
                            reason=Reason.INVALID_SIGNATURE)
    der = encode_dss_signature(int.from_bytes(signature[:_COORD], "big"),
                               int.from_bytes(signature[_COORD:], "big"))
    signing = f"{parts[0]}.{parts[1]}".encode("ascii")
    kid = header.get("kid")
    # The kid only orders the search: every trusted key is tried, none other is.
    ordered = sorted(keys, key=lambda k: thumbprint(k) != kid)
    for key in ordered:
        try:
            key.verify(der, signing, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return Opened(header, claims, key)
    raise EvidenceError("the result is not signed by a verifier key this host trusts",
                        reason=Reason.INVALID_SIGNATURE,
                        hint="pass the verifier's key (`attest result key`) with "
                        "--verifier-key, or put it in $ATTEST_HOME/verifier-keys/")


def _part(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def _object(part: str, what: str) -> dict[str, Any]:
    data = unb64url(part, f"the result's {what}")
    try:
        value = strictjson.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _malformed(f"the result's {what} is not JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise _malformed(f"the result's {what} is not a JSON object")
    return value


def _malformed(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.MALFORMED_ARTIFACT)
