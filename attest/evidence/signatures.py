"""Checking a TPMT_SIGNATURE over TPM-made bytes with an AK's public key.

The signature always covers the exact bytes received: nothing is re-marshalled
before hashing, so a parser quirk can never make two different inputs verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeAlias, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

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
    SignatureFields,
    signature_fields,
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
# Keys built from TPMT_PUBLIC key material, by that material's exact value and type (a
# verifier checks many quotes from the same AKs): building a key costs as much as a check.
KEY_CACHE_SIZE = 1024
# By signature hash: how the signed data is passed to `cryptography`, as a digest made
# with hashlib (cheaper than cryptography's own hashing) or, for SHA-1 (allowed only
# when asked, and refused by hashlib in FIPS mode), as the message it hashes itself.
_SIGNED: dict[str, tuple[Callable[[bytes], Any] | None, hashes.HashAlgorithm | Prehashed]] = {
    "sha1": (None, _HASHES["sha1"]),
    "sha256": (hashlib.sha256, Prehashed(_HASHES["sha256"])),
    "sha384": (hashlib.sha384, Prehashed(_HASHES["sha384"])),
    "sha512": (hashlib.sha512, Prehashed(_HASHES["sha512"])),
}
_ECDSA = {name: ec.ECDSA(algorithm) for name, (_, algorithm) in _SIGNED.items()}
# Stateless padding objects, made once.
_PKCS1V15 = padding.PKCS1v15()
_PSS = {
    name: padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
    for name, algorithm in _HASHES.items()
}
_ECDSA_ALG = int(Alg.ECDSA)
_RSAPSS_ALG = int(Alg.RSAPSS)
_NULL_ALG = int(Alg.NULL)


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    return _HASHES[name]


def curve_id_for(curve: ec.EllipticCurve) -> Curve | None:
    for curve_id, known in _CURVES.items():
        if known.name == curve.name:
            return Curve(curve_id)
    return None


def public_key(public: Public, reason: Reason = Reason.KEY_ATTRIBUTES_INVALID) -> PublicKey:
    """The `cryptography` key inside a TPMT_PUBLIC; refuses inconsistent key material.

    Keys are immutable and shared: the same key material gives the same key object.
    """
    known = _KEYS_BY_PUBLIC.get(id(public))
    if known is not None and known[0] is public:
        return known[1]
    parms = public.parms
    try:
        if isinstance(parms, RSAParms):
            if not parms.modulus or len(parms.modulus) * 8 != parms.key_bits:
                raise MalformedEvidence(
                    f"RSA modulus of {len(parms.modulus)} bytes for keyBits {parms.key_bits}",
                    reason=reason,
                )
            exponent = parms.exponent or DEFAULT_RSA_EXPONENT
            if type(exponent) is int and type(parms.modulus) is bytes:
                key: PublicKey = _rsa_key(exponent, parms.modulus)
                if type(parms.key_bits) is int:
                    _remember(public, key)
                return key
            return _build_rsa_key(exponent, parms.modulus)
        curve = _CURVES.get(parms.curve)
        if curve is None:
            raise MalformedEvidence(f"ECC curve 0x{parms.curve:04x} unsupported", reason=reason)
        size = CURVE_BYTES[Curve(parms.curve)]
        if len(parms.x) > size or len(parms.y) > size:
            raise MalformedEvidence("ECC point larger than its curve", reason=reason)
        if type(parms.x) is bytes and type(parms.y) is bytes:
            key = _ecc_key(curve, parms.x, parms.y)
            if type(parms.curve) in (int, Curve):
                _remember(public, key)
            return key
        return _build_ecc_key(curve, parms.x, parms.y)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedEvidence(f"unusable public key: {exc}", reason=reason) from None


def _build_rsa_key(exponent: int, modulus: bytes) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()


def _build_ecc_key(curve: ec.EllipticCurve, x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    point = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    return ec.EllipticCurvePublicNumbers(*point, curve).public_key()


# Only exact ints and bytes reach the caches (typed: 1 and True are different keys), so a
# cached key is always the one its arguments build; failures raise and are never cached.
_rsa_key = lru_cache(maxsize=KEY_CACHE_SIZE, typed=True)(_build_rsa_key)
_ecc_key = lru_cache(maxsize=KEY_CACHE_SIZE, typed=True)(_build_ecc_key)


# The key of each Public given lately, by identity: a verifier passes the same AK object
# again and again. The entry holds the Public, so its id stays its own; it is made only
# when every field the key derives from is an immutable int or bytes.
_KEYS_BY_PUBLIC: dict[int, tuple[Public, PublicKey]] = {}


def _remember(public: Public, key: PublicKey) -> None:
    if len(_KEYS_BY_PUBLIC) >= KEY_CACHE_SIZE:
        _KEYS_BY_PUBLIC.clear()
    _KEYS_BY_PUBLIC[id(public)] = (public, key)


def clear_key_cache() -> None:
    """Forget the keys built by :func:`public_key` (tests; memory)."""
    _KEYS_BY_PUBLIC.clear()
    _rsa_key.cache_clear()
    _ecc_key.cache_clear()


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
    verify_signature_fields(
        message, signature_fields(signature), key, reason=reason, allow_sha1=allow_sha1
    )


def verify_signature_fields(
    message: bytes,
    signature: SignatureFields,
    key: VerifyingKey,
    *,
    reason: Reason,
    allow_sha1: bool = False,
) -> None:
    """:func:`verify_tpm_signature` for a TPMT_SIGNATURE's fields (see SignatureFields)."""
    sig_alg, hash_alg, rsa_signature, r, s = signature
    if hash_alg not in SIGNATURE_HASHES:
        check_hash_allowed(hash_alg, allow_sha1=allow_sha1)
    if isinstance(key, Public):
        _check_key_scheme(sig_alg, hash_alg, key, reason)
        crypto_key = public_key(key, reason)
    else:
        crypto_key = key
    digest_of, algorithm = _SIGNED[hash_alg]
    try:
        if sig_alg == _ECDSA_ALG:
            if type(crypto_key) not in _ECC_KEY_TYPES and not _is_key(
                crypto_key, ec.EllipticCurvePublicKey, _ECC_KEY_TYPES
            ):
                raise EvidenceError("ECDSA signature but an RSA key", reason=reason)
            der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            data = message if digest_of is None else digest_of(message).digest()
            cast(ec.EllipticCurvePublicKey, crypto_key).verify(der, data, _ECDSA[hash_alg])
            return
        if type(crypto_key) not in _RSA_KEY_TYPES and not _is_key(
            crypto_key, rsa.RSAPublicKey, _RSA_KEY_TYPES
        ):
            raise EvidenceError("RSA signature but an ECC key", reason=reason)
        # TPMs differ on the PSS salt length (digest size vs. maximum); both are sound.
        pad = _PSS[hash_alg] if sig_alg == _RSAPSS_ALG else _PKCS1V15
        data = message if digest_of is None else digest_of(message).digest()
        cast(rsa.RSAPublicKey, crypto_key).verify(rsa_signature, data, pad, algorithm)
    except InvalidSignature:
        raise EvidenceError("signature does not verify with the given key", reason=reason) from None
    except ValueError as exc:  # e.g. r or s out of range
        raise EvidenceError(f"signature unusable: {exc}", reason=reason) from None


# Concrete classes seen to be instances of the key ABCs (isinstance on an ABC costs as
# much as the rest of the checks; a class, once registered, stays an instance).
_RSA_KEY_TYPES: set[type] = set()
_ECC_KEY_TYPES: set[type] = set()


def _is_key(key: object, abc: type, known: set[type]) -> bool:
    """isinstance(key, abc); a class found to be one is added to ``known``."""
    if isinstance(key, abc):
        known.add(type(key))
        return True
    return False


def _check_key_scheme(sig_alg: int, hash_alg: str, key: Public, reason: Reason) -> None:
    """A key that names a scheme (every restricted signing key does) signs only with it."""
    scheme = key.parms.scheme
    if scheme.scheme == _NULL_ALG:
        return
    if scheme.scheme != sig_alg or scheme.hash_alg != HASH_ALGS[hash_alg]:
        raise EvidenceError(
            f"signature scheme 0x{sig_alg:04x}/{hash_alg} is not the key's "
            f"scheme 0x{scheme.scheme:04x}/0x{scheme.hash_alg:04x}",
            reason=reason,
        )
    if isinstance(key.parms, ECCParms) != (sig_alg == _ECDSA_ALG):
        raise EvidenceError("signature algorithm does not fit the key type", reason=reason)
