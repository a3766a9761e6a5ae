"""What a key's TPMT_PUBLIC must say before a verifier trusts what it signs.

An AK is a restricted signing key: the TPM signs with it only digests it made
itself (quotes, certifications), never an outside digest that could imitate a
TPMS_ATTEST. A signing key certified for artifacts is the opposite: it signs
outside digests, so its use must be gated by its policy (userWithAuth clear).
"""

from __future__ import annotations

from attest.errors import EvidenceError
from attest.evidence.structures import Alg, Curve, ECCParms, ObjectAttributes, Public, RSAParms
from attest.reasons import Reason

A = ObjectAttributes
# The private part was made inside this TPM and can never leave it.
TPM_BOUND = A.FIXED_TPM | A.FIXED_PARENT | A.SENSITIVE_DATA_ORIGIN
AK_REQUIRED = TPM_BOUND | A.RESTRICTED | A.SIGN
SIGNING_KEY_REQUIRED = TPM_BOUND | A.SIGN
MIN_RSA_BITS = 2048
ALLOWED_CURVES = frozenset({Curve.NIST_P256, Curve.NIST_P384})
# check_ak's attribute test on plain ints: AK_REQUIRED set and DECRYPT clear.
_AK_TESTED = int(AK_REQUIRED | A.DECRYPT)
_AK_WANTED = int(AK_REQUIRED)


def _refuse(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.KEY_ATTRIBUTES_INVALID)


def _missing(public: Public, required: ObjectAttributes) -> str:
    missing = required & ~public.attributes
    return ", ".join(flag.name or hex(flag.value) for flag in ObjectAttributes if flag in missing)


def check_key_strength(public: Public) -> None:
    """RSA of at least 2048 bits, or ECC on P-256 or P-384; raises key_attributes_invalid."""
    parms = public.parms
    if isinstance(parms, RSAParms):
        if parms.key_bits < MIN_RSA_BITS:
            raise _refuse(f"RSA key of {parms.key_bits} bits; at least {MIN_RSA_BITS} required")
    elif isinstance(parms, ECCParms) and parms.curve not in ALLOWED_CURVES:
        raise _refuse(f"ECC curve 0x{parms.curve:04x} is not P-256 or P-384")


def check_ak(public: Public) -> None:
    """Raise key_attributes_invalid unless ``public`` is a TPM-bound restricted signing key."""
    if _PASSED_AKS.get(id(public)) is public:
        return
    attributes = public.attributes
    if type(attributes) is A and int(attributes) & _AK_TESTED == _AK_WANTED:
        # the attributes pass both tests below; then check_key_strength's usual passes
        parms = public.parms
        if (type(parms) is RSAParms and type(parms.key_bits) is int
                and parms.key_bits >= MIN_RSA_BITS) or (
            type(parms) is ECCParms and type(parms.curve) in (int, Curve)
            and parms.curve in ALLOWED_CURVES
        ):
            # every field tested is immutable: this Public passes every time
            if len(_PASSED_AKS) >= _MAX_PASSED_AKS:
                _PASSED_AKS.clear()
            _PASSED_AKS[id(public)] = public
            return
        check_key_strength(public)
        return
    if not public.has(AK_REQUIRED):
        raise _refuse(f"AK lacks {_missing(public, AK_REQUIRED)}")
    if public.attributes & A.DECRYPT:
        raise _refuse("AK has decrypt set; an attestation key must only sign")
    check_key_strength(public)


# Publics that passed check_ak, by identity (a verifier passes the same AK object again
# and again); each entry holds its Public, so the id stays its own.
_PASSED_AKS: dict[int, Public] = {}
_MAX_PASSED_AKS = 1024


def check_signing_key(public: Public) -> None:
    """Raise key_attributes_invalid unless ``public`` is a TPM-bound, policy-gated signing key."""
    if not public.has(SIGNING_KEY_REQUIRED):
        raise _refuse(f"signing key lacks {_missing(public, SIGNING_KEY_REQUIRED)}")
    if public.attributes & A.RESTRICTED:
        raise _refuse("signing key is restricted; it could not sign outside digests")
    if public.attributes & A.USER_WITH_AUTH:
        # with userWithAuth set, the bare password signs and the PCR policy is bypassed
        raise _refuse("signing key has userWithAuth set; its policy could be bypassed")
    if public.attributes & A.DECRYPT:
        raise _refuse("signing key has decrypt set; it must only sign")
    if public.type not in (Alg.RSA, Alg.ECC):
        raise _refuse("signing key is neither RSA nor ECC")
    check_key_strength(public)
