"""An approval authority's PEM public key as the TPM name a PolicyAuthorize names.

A key made with ``--authority`` has the authPolicy
``PolicyAuthorize(authority name, policyRef)``, where the name is that of the
TPMT_PUBLIC ``attest.tpm.keys.authority_public_from_pem`` builds from the PEM.
A verifier needs the same name without a TPM stack, so the same TPMT_PUBLIC is
built here from the key's numbers: sign + userWithAuth, nameAlg SHA-256, no
symmetric part, and the scheme pinned (ECDSA or RSASSA with SHA-256) so the
name never depends on a library default.

ECC coordinates are written at the curve's full width (32 bytes for P-256, as
TPM 2.0 Part 1 C.8 has them), never shortened by a leading zero: the TPM
hashes the bytes it is given, so both sides must agree on one encoding.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest.errors import MalformedInput
from attest.evidence.structures import (
    Alg,
    Curve,
    ECCParms,
    ObjectAttributes,
    Public,
    RSAParms,
    Scheme,
    SymDef,
)

_ATTRIBUTES = ObjectAttributes.SIGN | ObjectAttributes.USER_WITH_AUTH
MIN_RSA_BITS = 2048
# TPM2B_PUBLIC.from_pem writes the default exponent as 0 (TPM 2.0 Part 2, 12.2.3.5).
_DEFAULT_EXPONENT = 65537


def authority_public(pem: bytes) -> Public:
    """The TPMT_PUBLIC of an authority key (ECC P-256 or RSA of 2048 bits or more)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MalformedInput(f"the authority key is not a PEM public key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise MalformedInput(f"an ECC authority key must be P-256, not {key.curve.name}")
        point = key.public_numbers()
        return Public(
            type=Alg.ECC, name_alg="sha256", attributes=_ATTRIBUTES, auth_policy=b"",
            parms=ECCParms(SymDef(), Scheme(Alg.ECDSA, Alg.SHA256), Curve.NIST_P256,
                           Scheme(Alg.NULL), point.x.to_bytes(32, "big"),
                           point.y.to_bytes(32, "big")),
        )
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise MalformedInput(f"an RSA authority key must have at least {MIN_RSA_BITS} bits, "
                                 f"not {key.key_size}")
        numbers = key.public_numbers()
        if numbers.e >= 1 << 32:
            raise MalformedInput("the authority key's RSA exponent does not fit a TPM (32 bits)")
        exponent = 0 if numbers.e == _DEFAULT_EXPONENT else numbers.e
        return Public(
            type=Alg.RSA, name_alg="sha256", attributes=_ATTRIBUTES, auth_policy=b"",
            parms=RSAParms(SymDef(), Scheme(Alg.RSASSA, Alg.SHA256), key.key_size, exponent,
                           _unpadded(numbers.n)),
        )
    raise MalformedInput("the authority key must be ECC P-256 or RSA")


def authority_name(pem: bytes) -> bytes:
    """The TPM name (nameAlg || SHA-256(TPMT_PUBLIC)) of an authority's PEM public key."""
    return authority_public(pem).name


def _unpadded(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")
