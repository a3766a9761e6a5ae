"""The EK's public area rebuilt from its certificate matches the TCG templates."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from evidence_helpers import vector_dir
from tpm2_pytss.internal.templates import ek_template
from tpm2_pytss.types import TPMT_PUBLIC

from attest.errors import EvidenceError
from attest.evidence.ekcert import parse_ek_certificate
from attest.evidence.ektemplate import POLICY_A_SHA256, EKTemplate, default_template, ek_public
from attest.evidence.structures import RSAParms, parse_public

TPM_CC_POLICY_SECRET = 0x00000151
TPM_RH_ENDORSEMENT = 0x4000000B

PYTSS_NAMES = {
    EKTemplate.L1_RSA2048: "EK-RSA2048",
    EKTemplate.L2_ECC_P256: "EK-ECC256",
    EKTemplate.H1_RSA2048: "EK-HIGH-RSA2048",
    EKTemplate.H2_ECC_P256: "EK-HIGH-ECC256",
    EKTemplate.H3_ECC_P384: "EK-HIGH-ECC384",
    EKTemplate.H4_ECC_P521: "EK-HIGH-ECC521",
    EKTemplate.H6_RSA3072: "EK-HIGH-RSA3072",
    EKTemplate.H7_RSA4096: "EK-HIGH-RSA4096",
}
KEY_FOR = {
    EKTemplate.L1_RSA2048: lambda: rsa.generate_private_key(65537, 2048),
    EKTemplate.H1_RSA2048: lambda: rsa.generate_private_key(65537, 2048),
    EKTemplate.H6_RSA3072: lambda: rsa.generate_private_key(65537, 3072),
    EKTemplate.H7_RSA4096: lambda: rsa.generate_private_key(65537, 4096),  # slowest: ~0.3 s
    EKTemplate.L2_ECC_P256: lambda: ec.generate_private_key(ec.SECP256R1()),
    EKTemplate.H2_ECC_P256: lambda: ec.generate_private_key(ec.SECP256R1()),
    EKTemplate.H3_ECC_P384: lambda: ec.generate_private_key(ec.SECP384R1()),
    EKTemplate.H4_ECC_P521: lambda: ec.generate_private_key(ec.SECP521R1()),
}


def _pytss_template(name: str) -> TPMT_PUBLIC:
    return ek_template.lookup(name).template.publicArea


@pytest.mark.parametrize("template", list(EKTemplate), ids=lambda t: t.name)
def test_template_fields_match_tpm2_pytss(template: EKTemplate) -> None:
    ours = ek_public(KEY_FOR[template]().public_key(), template)  # type: ignore[no-untyped-call]
    theirs = _pytss_template(PYTSS_NAMES[template])
    # compare everything before `unique`, which the key fills in
    parms = ours.parms
    unique_len = (2 + len(parms.modulus) if isinstance(parms, RSAParms)
                  else 4 + len(parms.x) + len(parms.y))
    theirs_unique = theirs.unique.marshal(theirs.type)
    assert ours.marshal()[:-unique_len] == theirs.marshal()[: -len(theirs_unique)]


def test_low_range_policy_is_policy_secret_of_the_endorsement_hierarchy() -> None:
    inner = hashlib.sha256(bytes(32) + struct.pack(">II", TPM_CC_POLICY_SECRET,
                                                   TPM_RH_ENDORSEMENT)).digest()
    assert hashlib.sha256(inner).digest() == POLICY_A_SHA256  # empty policyRef


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("stm_rsa/ek_leaf.der", EKTemplate.L1_RSA2048),
        ("stm_ecc/ek_leaf.der", EKTemplate.L2_ECC_P256),
        ("gce_vtpm_ecc/ek_leaf.pem", EKTemplate.L2_ECC_P256),
        ("gce_vtpm_rsa/ek_leaf.pem", EKTemplate.L1_RSA2048),
    ],
)
def test_real_ek_certificates_rebuild_a_parseable_ek_with_the_matching_name(
    path: str, expected: EKTemplate
) -> None:
    ek = parse_ek_certificate(vector_dir("ekcerts", *path.split("/")).read_bytes())
    assert default_template(ek.public_key) is expected
    public = ek_public(ek.public_key)
    assert parse_public(public.marshal()) == public
    theirs, _ = TPMT_PUBLIC.unmarshal(public.marshal())
    assert public.name == bytes(theirs.get_name())


def test_a_template_that_does_not_fit_the_key_is_refused() -> None:
    with pytest.raises(EvidenceError):
        ek_public(ec.generate_private_key(ec.SECP256R1()).public_key(), EKTemplate.H3_ECC_P384)
