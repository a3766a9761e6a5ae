"""Quote checks real vectors cannot reach, on TPMS_ATTEST bytes signed by a software AK."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from evidence_helpers import SoftTPM

from attest.errors import EvidenceError
from attest.evidence.pcrs import HASH_ALGS, PCRSelection
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.structures import (
    Alg,
    ObjectAttributes,
    Public,
    RSAParms,
    Scheme,
    Signature,
    SymDef,
)
from attest.reasons import Reason

NONCE = b"binding-" * 4
SELECTION = PCRSelection.parse("sha256:0,7,16")
VALUES = {key: bytes([key[1]]) * 32 for key in SELECTION}


def _verify(tpm: SoftTPM, quote: bytes, *,
            expected_signer: bytes | None = None) -> QuoteFacts:
    return verify_quote(quote, tpm.sign(quote), tpm.public, expected_extra_data=NONCE,
                        pcr_values=VALUES, expected_signer=expected_signer)


def test_ecdsa_p256_quote_verifies(soft_tpm: SoftTPM) -> None:
    facts = verify_quote(soft_tpm.quote(SELECTION, VALUES, extra=NONCE),
                         soft_tpm.sign(soft_tpm.quote(SELECTION, VALUES, extra=NONCE)),
                         soft_tpm.public, expected_extra_data=NONCE, pcr_values=VALUES,
                         expected_signer=soft_tpm.qualified_name)
    assert facts.signature_scheme == "ecdsa"
    assert facts.pcrs["sha256"][16] == b"\x10" * 32


def test_clear_safe_flag_is_a_possible_clock_rollback(soft_tpm: SoftTPM) -> None:
    with pytest.raises(EvidenceError) as err:
        _verify(soft_tpm, soft_tpm.quote(SELECTION, VALUES, extra=NONCE, safe=0))
    assert err.value.reason is Reason.CLOCK_ROLLBACK


def test_a_quote_is_not_compared_with_earlier_ones(soft_tpm: SoftTPM) -> None:
    """Rollback and reset are judged against the AK's boots by the verifier
    (attest.verify.tpmtime, tests/verify/test_tpmtime.py), not by verify_quote."""
    facts = _verify(soft_tpm, soft_tpm.quote(SELECTION, VALUES, extra=NONCE, clock=10))
    assert facts.clock_info.clock == 10
    assert not hasattr(facts, "new_epoch") and not hasattr(facts, "rebooted")


def test_a_signed_certification_is_not_a_quote(soft_tpm: SoftTPM) -> None:
    with pytest.raises(EvidenceError) as err:
        _verify(soft_tpm, soft_tpm.certify(soft_tpm.public.name, extra=NONCE))
    assert err.value.reason is Reason.QUOTE_MALFORMED


def test_signed_bytes_without_the_tpm_magic_are_malformed(soft_tpm: SoftTPM) -> None:
    with pytest.raises(EvidenceError) as err:
        _verify(soft_tpm, soft_tpm.quote(SELECTION, VALUES, extra=NONCE, magic=0xFF544348))
    assert err.value.reason is Reason.QUOTE_MALFORMED


def test_another_qualified_signer_is_refused(soft_tpm: SoftTPM) -> None:
    with pytest.raises(EvidenceError) as err:
        _verify(soft_tpm, soft_tpm.quote(SELECTION, VALUES, extra=NONCE),
                expected_signer=b"\x00\x0b" + bytes(32))
    assert err.value.reason is Reason.QUOTE_SIGNATURE_INVALID


@pytest.mark.parametrize(
    "attributes",
    [
        ObjectAttributes.SIGN | ObjectAttributes.FIXED_TPM | ObjectAttributes.FIXED_PARENT
        | ObjectAttributes.SENSITIVE_DATA_ORIGIN,  # not restricted
        ObjectAttributes.SIGN | ObjectAttributes.RESTRICTED | ObjectAttributes.FIXED_PARENT
        | ObjectAttributes.SENSITIVE_DATA_ORIGIN,  # not fixedTPM
        ObjectAttributes.SIGN | ObjectAttributes.RESTRICTED | ObjectAttributes.FIXED_TPM
        | ObjectAttributes.FIXED_PARENT | ObjectAttributes.SENSITIVE_DATA_ORIGIN
        | ObjectAttributes.DECRYPT,  # decrypt set
    ],
)
def test_an_ak_that_is_not_a_tpm_bound_restricted_signer_is_refused(
    soft_tpm: SoftTPM, attributes: ObjectAttributes
) -> None:
    weak = dataclasses.replace(soft_tpm.public, attributes=attributes)
    quote = soft_tpm.quote(SELECTION, VALUES, extra=NONCE)
    with pytest.raises(EvidenceError) as err:
        verify_quote(quote, soft_tpm.sign(quote), weak, expected_extra_data=NONCE,
                     pcr_values=VALUES)
    assert err.value.reason is Reason.KEY_ATTRIBUTES_INVALID


def test_a_signature_outside_the_aks_scheme_is_refused(soft_tpm: SoftTPM) -> None:
    sha384_ak = dataclasses.replace(
        soft_tpm.public,
        parms=dataclasses.replace(soft_tpm.public.parms,
                                  scheme=Scheme(Alg.ECDSA, HASH_ALGS["sha384"])),
    )
    quote = soft_tpm.quote(SELECTION, VALUES, extra=NONCE)
    with pytest.raises(EvidenceError) as err:
        verify_quote(quote, soft_tpm.sign(quote), sha384_ak, expected_extra_data=NONCE,
                     pcr_values=VALUES)
    assert err.value.reason is Reason.QUOTE_SIGNATURE_INVALID


def _rsa_ak(key: rsa.RSAPrivateKey, scheme: int) -> Public:
    n = key.public_key().public_numbers().n
    size = key.key_size
    return Public(Alg.RSA, "sha256", soft_ak_attributes(), b"",
                  RSAParms(SymDef(), Scheme(scheme, HASH_ALGS["sha256"]), size, 0,
                           n.to_bytes(size // 8, "big")))


def soft_ak_attributes() -> ObjectAttributes:
    a = ObjectAttributes
    return (a.FIXED_TPM | a.FIXED_PARENT | a.SENSITIVE_DATA_ORIGIN | a.USER_WITH_AUTH
            | a.RESTRICTED | a.SIGN)


@pytest.mark.parametrize("salt", [32, 222])  # digest length, and the maximum for RSA-2048
def test_rsapss_quotes_verify_with_either_salt_length(soft_tpm: SoftTPM, salt: int) -> None:
    key = rsa.generate_private_key(65537, 2048)
    quote = soft_tpm.quote(SELECTION, VALUES, extra=NONCE)
    raw = key.sign(quote, padding.PSS(padding.MGF1(hashes.SHA256()), salt), hashes.SHA256())
    sig = Signature(Alg.RSAPSS, "sha256", rsa=raw)
    facts = verify_quote(quote, sig, _rsa_ak(key, Alg.RSAPSS), expected_extra_data=NONCE,
                         pcr_values=VALUES)
    assert facts.signature_scheme == "rsapss"


def test_an_rsa_ak_under_2048_bits_is_refused(soft_tpm: SoftTPM) -> None:
    key = rsa.generate_private_key(65537, 1024)  # noqa: S505 (the weakness under test)
    quote = soft_tpm.quote(SELECTION, VALUES, extra=NONCE)
    sig = Signature(Alg.RSASSA, "sha256",
                    rsa=key.sign(quote, padding.PKCS1v15(), hashes.SHA256()))
    with pytest.raises(EvidenceError) as err:
        verify_quote(quote, sig, _rsa_ak(key, Alg.RSASSA), expected_extra_data=NONCE,
                     pcr_values=VALUES)
    assert err.value.reason is Reason.KEY_ATTRIBUTES_INVALID


def test_an_rsa_signature_checked_with_an_ecc_key_is_invalid(soft_tpm: SoftTPM) -> None:
    key = rsa.generate_private_key(65537, 2048)
    quote = soft_tpm.quote(SELECTION, VALUES, extra=NONCE)
    sig = Signature(Alg.RSASSA, "sha256",
                    rsa=key.sign(quote, padding.PKCS1v15(), hashes.SHA256()))
    bare = soft_tpm.key.public_key()
    with pytest.raises(EvidenceError) as err:
        verify_quote(quote, sig, bare, expected_extra_data=NONCE, pcr_values=VALUES)
    assert err.value.reason is Reason.QUOTE_SIGNATURE_INVALID
