"""Checking a TPMT_SIGNATURE over TPM-made bytes with an AK's public key.

The signature always covers the exact bytes received: nothing is re-marshalled
before hashing, so a parser quirk can never make two different inputs verify.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attest.errors import EvidenceError, MalformedEvidence
from attest.evidence.pcrs import HASH_ALGS
from attest.evidence.structures import (
    CURVE_BYTES,
    Alg,
    Curve,
    ECCParms,
    Public,
    RSAParms,
    Signature,
)
from attest.reasons import Reason

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# A key a TPM signature is checked with: a TPMT_PUBLIC (scheme and name known) or a bare key.
VerifyingKey: TypeAlias = Public | PublicKey

SIGNATURE_HASHES = frozenset({"sha256", "sha384", "sha512"})
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 (legacy AKs; refused unless allow_sha1)
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_CURVES: dict[int, ec.EllipticCurve] = {
    Curve.NIST_P256: ec.SECP256R1(),
    Curve.NIST_P384: ec.SECP384R1(),
    Curve.NIST_P521: ec.SECP521R1(),
}
DEFAULT_RSA_EXPONENT = 65537


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    return _HASHES[name]


def curve_for(curve_id: int) -> ec.EllipticCurve | None:
    return _CURVES.get(curve_id)


def curve_id_for(curve: ec.EllipticCurve) -> Curve | None:
    for curve_id, known in _CURVES.items():
        if known.name == curve.name:
            return Curve(curve_id)
    return None


def public_key(public: Public, reason: Reason = Reason.KEY_ATTRIBUTES_INVALID) -> PublicKey:
    """The `cryptography` key inside a TPMT_PUBLIC; refuses inconsistent key material."""
    parms = public.parms
    try:
        if isinstance(parms, RSAParms):
            if not parms.modulus or len(parms.modulus) * 8 != parms.key_bits:
                raise MalformedEvidence(
                    f"RSA modulus of {len(parms.modulus)} bytes for keyBits {parms.key_bits}",
                    reason=reason,
                )
            exponent = parms.exponent or DEFAULT_RSA_EXPONENT
            n = int.from_bytes(parms.modulus, "big")
            return rsa.RSAPublicNumbers(exponent, n).public_key()
        curve = _CURVES.get(parms.curve)
        if curve is None:
            raise MalformedEvidence(f"ECC curve 0x{parms.curve:04x} unsupported", reason=reason)
        size = CURVE_BYTES[Curve(parms.curve)]
        if len(parms.x) > size or len(parms.y) > size:
            raise MalformedEvidence("ECC point larger than its curve", reason=reason)
        x, y = int.from_bytes(parms.x, "big"), int.from_bytes(parms.y, "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedEvidence(f"unusable public key: {exc}", reason=reason) from None


def as_public_key(key: VerifyingKey, reason: Reason) -> PublicKey:
    return public_key(key, reason) if isinstance(key, Public) else key


def check_hash_allowed(hash_alg: str, *, allow_sha1: bool) -> None:
    if hash_alg in SIGNATURE_HASHES or (hash_alg == "sha1" and allow_sha1):
        return
    hint = "pass allow_sha1 to accept legacy SHA-1 AKs" if hash_alg == "sha1" else None
    raise EvidenceError(
        f"signature hash {hash_alg} is not on the allowlist", reason=Reason.ALG_NOT_ALLOWED,
        hint=hint,
    )


def verify_tpm_signature(
    message: bytes,
    signature: Signature,
    key: VerifyingKey,
    *,
    reason: Reason,
    allow_sha1: bool = False,
) -> None:
    """Raise EvidenceError unless ``signature`` is the key's signature over ``message``.

    ``reason`` names a wrong signature (quote_signature_invalid,
    certify_signature_invalid); a refused hash or scheme is alg_not_allowed.
    """
    check_hash_allowed(signature.hash_alg, allow_sha1=allow_sha1)
    if isinstance(key, Public):
        _check_key_scheme(signature, key, reason)
    crypto_key = as_public_key(key, reason)
    algorithm = _HASHES[signature.hash_alg]
    try:
        if signature.sig_alg == Alg.ECDSA:
            if not isinstance(crypto_key, ec.EllipticCurvePublicKey):
                raise EvidenceError("ECDSA signature but an RSA key", reason=reason)
            der = encode_dss_signature(
                int.from_bytes(signature.r, "big"), int.from_bytes(signature.s, "big")
            )
            crypto_key.verify(der, message, ec.ECDSA(algorithm))
            return
        if not isinstance(crypto_key, rsa.RSAPublicKey):
            raise EvidenceError("RSA signature but an ECC key", reason=reason)
        pad: padding.AsymmetricPadding
        if signature.sig_alg == Alg.RSAPSS:
            # TPMs differ on the PSS salt length (digest size vs. maximum); both are sound.
            pad = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
        else:
            pad = padding.PKCS1v15()
        crypto_key.verify(signature.rsa, message, pad, algorithm)
    except InvalidSignature:
        raise EvidenceError("signature does not verify with the given key", reason=reason) from None
    except ValueError as exc:  # e.g. r or s out of range
        raise EvidenceError(f"signature unusable: {exc}", reason=reason) from None


def _check_key_scheme(signature: Signature, key: Public, reason: Reason) -> None:
    """A key that names a scheme (every restricted signing key does) signs only with it."""
    scheme = key.parms.scheme
    if scheme.scheme == Alg.NULL:
        return
    if scheme.scheme != signature.sig_alg or scheme.hash_alg != HASH_ALGS[signature.hash_alg]:
        raise EvidenceError(
            f"signature scheme 0x{signature.sig_alg:04x}/{signature.hash_alg} is not the key's "
            f"scheme 0x{scheme.scheme:04x}/0x{scheme.hash_alg:04x}",
            reason=reason,
        )
    if isinstance(key.parms, ECCParms) != (signature.sig_alg == Alg.ECDSA):
        raise EvidenceError("signature algorithm does not fit the key type", reason=reason)
