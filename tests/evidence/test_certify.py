"""TPM2_Certify of a PCR-bound signing key by the AK (software-signed TPMS_ATTEST)."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from evidence_helpers import SIGNING_KEY_ATTRIBUTES, SoftTPM, ecc_public, vector_dir

from attest.errors import EvidenceError
from attest.evidence.certify import verify_certification
from attest.evidence.pcrs import PCRSelection
from attest.evidence.signatures import verify_tpm_signature
from attest.evidence.structures import (
    ObjectAttributes,
    Public,
    Scheme,
    parse_public,
    parse_signature,
)
from attest.evidence.tpmpolicy import pcr_auth_policy
from attest.reasons import Reason

SELECTION = PCRSelection.parse("sha256:0-7")
POLICY = pcr_auth_policy(SELECTION, {key: bytes(32) for key in SELECTION})
EXTRA = b"certify-extra"


@pytest.fixture(scope="module")
def signing_key() -> Public:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return ecc_public(key, SIGNING_KEY_ATTRIBUTES, scheme=Scheme(), policy=POLICY)


def _certify(tpm: SoftTPM, key: Public, *, certified: Public | None = None,
             presented: bytes | Public | None = None, kind: int = 0x8017) -> object:
    name = (certified or key).name
    attest = tpm.attest(kind, (b"\x00\x22" + name) * 2, extra=EXTRA)
    return verify_certification(
        attest, tpm.sign(attest), tpm.public,
        presented if presented is not None else key.marshal_tpm2b(),
        expected_policy=POLICY, expected_extra_data=EXTRA,
        expected_signer=tpm.qualified_name,
    )


def test_a_certified_pcr_bound_key_yields_its_facts(soft_tpm: SoftTPM,
                                                   signing_key: Public) -> None:
    certified = verify_certification(
        attest := soft_tpm.certify(signing_key.name, extra=EXTRA), soft_tpm.sign(attest),
        soft_tpm.public, signing_key.marshal_tpm2b(), expected_policy=POLICY,
    )
    assert certified.name == signing_key.name
    assert certified.auth_policy == POLICY
    assert isinstance(certified.key, ec.EllipticCurvePublicKey)


def test_another_keys_public_is_not_certified(soft_tpm: SoftTPM, signing_key: Public) -> None:
    other = ecc_public(ec.generate_private_key(ec.SECP256R1()).public_key(),
                       SIGNING_KEY_ATTRIBUTES, scheme=Scheme(), policy=POLICY)
    with pytest.raises(EvidenceError) as err:
        _certify(soft_tpm, signing_key, presented=other)
    assert err.value.reason is Reason.KEY_NOT_CERTIFIED


def test_a_quote_is_not_a_certification(soft_tpm: SoftTPM, signing_key: Public) -> None:
    with pytest.raises(EvidenceError) as err:
        verify_certification(
            attest := soft_tpm.quote(SELECTION, {k: bytes(32) for k in SELECTION}),
            soft_tpm.sign(attest), soft_tpm.public, signing_key, expected_policy=POLICY,
        )
    assert err.value.reason is Reason.KEY_NOT_CERTIFIED


def test_a_wrong_extra_data_is_not_this_certification(soft_tpm: SoftTPM,
                                                      signing_key: Public) -> None:
    attest = soft_tpm.certify(signing_key.name, extra=b"other")
    with pytest.raises(EvidenceError) as err:
        verify_certification(attest, soft_tpm.sign(attest), soft_tpm.public, signing_key,
                             expected_policy=POLICY, expected_extra_data=EXTRA)
    assert err.value.reason is Reason.KEY_NOT_CERTIFIED


@pytest.mark.parametrize(
    "change",
    [
        ObjectAttributes.USER_WITH_AUTH,
        ObjectAttributes.RESTRICTED,
        ObjectAttributes.DECRYPT,
    ],
)
def test_a_key_whose_policy_could_be_bypassed_is_refused(
    soft_tpm: SoftTPM, signing_key: Public, change: ObjectAttributes
) -> None:
    weak = dataclasses.replace(signing_key, attributes=signing_key.attributes | change)
    with pytest.raises(EvidenceError) as err:
        _certify(soft_tpm, weak)
    assert err.value.reason is Reason.KEY_ATTRIBUTES_INVALID


def test_a_key_made_outside_the_tpm_is_refused(soft_tpm: SoftTPM, signing_key: Public) -> None:
    imported = dataclasses.replace(
        signing_key, attributes=signing_key.attributes & ~ObjectAttributes.SENSITIVE_DATA_ORIGIN
    )
    with pytest.raises(EvidenceError) as err:
        _certify(soft_tpm, imported)
    assert err.value.reason is Reason.KEY_ATTRIBUTES_INVALID


def test_another_policy_is_a_policy_mismatch(soft_tpm: SoftTPM, signing_key: Public) -> None:
    other = dataclasses.replace(signing_key, auth_policy=bytes(32))
    with pytest.raises(EvidenceError) as err:
        _certify(soft_tpm, other)
    assert err.value.reason is Reason.KEY_POLICY_MISMATCH


def test_a_certification_signed_by_another_key_is_invalid(soft_tpm: SoftTPM,
                                                         signing_key: Public) -> None:
    attest = soft_tpm.certify(signing_key.name, extra=EXTRA)
    impostor = SoftTPM(ec.generate_private_key(ec.SECP256R1()), soft_tpm.public)
    with pytest.raises(EvidenceError) as err:
        verify_certification(attest, impostor.sign(attest), soft_tpm.public, signing_key,
                             expected_policy=POLICY)
    assert err.value.reason is Reason.CERTIFY_SIGNATURE_INVALID


def test_windows_ak_creation_certification_signature_verifies_with_sha1_allowed() -> None:
    d = vector_dir("quotes", "ga_windows_gcp_shielded_vm")
    verify_tpm_signature(
        (d / "ak_certify_creation.tpms_attest.bin").read_bytes(),
        parse_signature((d / "ak_certify_creation_sig.tpmt_signature.bin").read_bytes()),
        parse_public((d / "ak_pub.tpmt_public.bin").read_bytes()),
        reason=Reason.CERTIFY_SIGNATURE_INVALID,
        allow_sha1=True,
    )
