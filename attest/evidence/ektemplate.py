"""The EK's TPMT_PUBLIC, rebuilt from its certificate's key and the TCG default template.

A verifier never sees the EK's public area, only the certificate; the TPM
derives the EK deterministically from a template (TCG EK Credential Profile
2.x, section B.3), so the certificate key plus the template give the exact
TPMT_PUBLIC, hence the EK name credential activation binds to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest.errors import EvidenceError
from attest.evidence.signatures import PublicKey, curve_id_for
from attest.evidence.structures import (
    CURVE_BYTES,
    Alg,
    Curve,
    ECCParms,
    ObjectAttributes,
    Public,
    RSAParms,
    Scheme,
    SymDef,
)
from attest.reasons import Reason

A = ObjectAttributes
# Low range (L-x): admin via PolicySecret(endorsement) only; high range (H-x) adds userWithAuth.
_LOW_ATTRIBUTES = (A.FIXED_TPM | A.FIXED_PARENT | A.SENSITIVE_DATA_ORIGIN | A.ADMIN_WITH_POLICY
                   | A.RESTRICTED | A.DECRYPT)
_HIGH_ATTRIBUTES = _LOW_ATTRIBUTES | A.USER_WITH_AUTH

# authPolicy values fixed by the EK Credential Profile: PolicyA (PolicySecret(TPM_RH_ENDORSEMENT))
# for the low range; PolicyB = PolicyOR(PolicyA, PolicyC) per hash for the high range.
POLICY_A_SHA256 = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
POLICY_B_SHA256 = bytes.fromhex("ca3d0a99a2b93906f7a3342414efcfb3a385d44cd1fd459089d19b5071c0b7a0")
POLICY_B_SHA384 = bytes.fromhex(
    "b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419ca"
    "cb47ba09699646150f9fc000f3f80e12"
)
POLICY_B_SHA512 = bytes.fromhex(
    "b8221ca69e8550a4914de3faa6a18c072cc01208073a928d5d66d59ef79e49a4"
    "29c41a6b269571d57edb25fbdb1838425608b413cd616a5f6db5b6071af99bea"
)
_AES128_CFB = SymDef(Alg.AES, 128, Alg.CFB)
_AES256_CFB = SymDef(Alg.AES, 256, Alg.CFB)


@dataclass(frozen=True)
class _Template:
    name_alg: str
    attributes: ObjectAttributes
    policy: bytes
    symmetric: SymDef
    rsa_bits: int = 0  # RSA templates
    curve: Curve | None = None  # ECC templates


class EKTemplate(Enum):
    """TCG default EK templates, by their profile names; swtpm's ECC EK is H-3."""

    L1_RSA2048 = _Template("sha256", _LOW_ATTRIBUTES, POLICY_A_SHA256, _AES128_CFB, rsa_bits=2048)
    L2_ECC_P256 = _Template("sha256", _LOW_ATTRIBUTES, POLICY_A_SHA256, _AES128_CFB,
                            curve=Curve.NIST_P256)
    H1_RSA2048 = _Template("sha256", _HIGH_ATTRIBUTES, POLICY_B_SHA256, _AES128_CFB, rsa_bits=2048)
    H2_ECC_P256 = _Template("sha256", _HIGH_ATTRIBUTES, POLICY_B_SHA256, _AES128_CFB,
                            curve=Curve.NIST_P256)
    H3_ECC_P384 = _Template("sha384", _HIGH_ATTRIBUTES, POLICY_B_SHA384, _AES256_CFB,
                            curve=Curve.NIST_P384)
    H4_ECC_P521 = _Template("sha512", _HIGH_ATTRIBUTES, POLICY_B_SHA512, _AES256_CFB,
                            curve=Curve.NIST_P521)
    H6_RSA3072 = _Template("sha384", _HIGH_ATTRIBUTES, POLICY_B_SHA384, _AES256_CFB, rsa_bits=3072)
    H7_RSA4096 = _Template("sha384", _HIGH_ATTRIBUTES, POLICY_B_SHA384, _AES256_CFB, rsa_bits=4096)


# The template a TPM uses for an EK of this kind when nothing else is known.
_DEFAULTS: dict[tuple[str, int], EKTemplate] = {
    ("rsa", 2048): EKTemplate.L1_RSA2048,
    ("rsa", 3072): EKTemplate.H6_RSA3072,
    ("rsa", 4096): EKTemplate.H7_RSA4096,
    ("ecc", Curve.NIST_P256): EKTemplate.L2_ECC_P256,
    ("ecc", Curve.NIST_P384): EKTemplate.H3_ECC_P384,
    ("ecc", Curve.NIST_P521): EKTemplate.H4_ECC_P521,
}


def default_template(key: PublicKey) -> EKTemplate:
    if isinstance(key, rsa.RSAPublicKey):
        found = _DEFAULTS.get(("rsa", key.key_size))
    else:
        curve = curve_id_for(key.curve)
        found = None if curve is None else _DEFAULTS.get(("ecc", curve))
    if found is None:
        raise EvidenceError(
            "no TCG EK template for this key type and size", reason=Reason.EK_CHAIN_INVALID
        )
    return found


def ek_public(key: PublicKey, template: EKTemplate | None = None) -> Public:
    """The TPMT_PUBLIC of the EK with this key, made from ``template`` (default by key type)."""
    chosen = template or default_template(key)
    t = chosen.value
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        if t.rsa_bits != key.key_size:
            raise EvidenceError(f"template {chosen.name} does not fit an RSA-{key.key_size} key",
                                reason=Reason.EK_CHAIN_INVALID)
        # exponent 0 in the template means the default 65537; any other the TPM would not make
        if numbers.e != 65537:
            raise EvidenceError("EK exponent is not 65537", reason=Reason.EK_CHAIN_INVALID)
        modulus = numbers.n.to_bytes(t.rsa_bits // 8, "big")
        parms: RSAParms | ECCParms = RSAParms(t.symmetric, Scheme(), t.rsa_bits, 0, modulus)
        kind = Alg.RSA
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)  # noqa: S101 (narrowing)
        if t.curve is None or curve_id_for(key.curve) != t.curve:
            raise EvidenceError(f"template {chosen.name} does not fit curve {key.curve.name}",
                                reason=Reason.EK_CHAIN_INVALID)
        size = CURVE_BYTES[t.curve]
        point = key.public_numbers()
        parms = ECCParms(t.symmetric, Scheme(), t.curve, Scheme(),
                         point.x.to_bytes(size, "big"), point.y.to_bytes(size, "big"))
        kind = Alg.ECC
    return Public(kind, t.name_alg, t.attributes, t.policy, parms)
