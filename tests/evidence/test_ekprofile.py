"""Only an EK certificate passes as one: a TLS certificate or a CA from an EK root does
not, while every real EK certificate in ../shared/vectors keeps verifying."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from evidence_helpers import vector_dir

from attest.errors import EvidenceError
from attest.evidence.ekcert import verify_chain, verify_ek_certificate
from attest.evidence.ekprofile import check_ek_profile, read_profile
from attest.reasons import Reason
from tests.ekcerts import EK_EKU, EKRootCA, rsa_key

AT = datetime(2024, 6, 1, tzinfo=UTC)

# Every EK leaf of the vectors with the chain that validates it (tests/evidence/test_ekcert.py).
EK_LEAVES = {
    "stm_rsa_padded": ("stm_rsa/ek_leaf_as_read_from_nv_with_ff_padding.der",
                       ["stm_rsa/anchor_GS_TPM_RT.pem"],
                       ["stm_rsa/intermediate_STM_RSA_05I.pem", "stm_rsa/root_STM_RSA_RT.pem"]),
    "stm_rsa": ("stm_rsa/ek_leaf.der", ["stm_rsa/root_STM_RSA_RT.pem"],
                ["stm_rsa/intermediate_STM_RSA_05I.pem"]),
    "stm_ecc": ("stm_ecc/ek_leaf.der", ["stm_ecc/root_STM_ECC_01RT.pem"],
                ["stm_ecc/intermediate_STM_ECC_01I.pem"]),
    "gce_ecc": ("gce_vtpm_ecc/ek_leaf.pem", ["gce_vtpm_ecc/root_tpm_ek_root_1.pem"],
                ["gce_vtpm_ecc/intermediate_tpm_ek_intermediate_3.pem"]),
    "gce_ecc_sibling_rsa": ("gce_vtpm_ecc/sibling_rsa_ek_leaf_same_chain.pem",
                            ["gce_vtpm_ecc/root_tpm_ek_root_1.pem"],
                            ["gce_vtpm_ecc/intermediate_tpm_ek_intermediate_3.pem"]),
    # The newer GCE profile: no SAN, no EKU; its key usage (encipherment only) marks it.
    "gce_rsa_no_san_no_eku": ("gce_vtpm_rsa/ek_leaf.pem",
                              ["gce_vtpm_rsa/root_gcp_ek_ak_ca_root.pem"],
                              ["gce_vtpm_rsa/intermediate_gcp_ek_ak_ca_intermediate_v3.pem"]),
    "gce_rsa_sibling_ecc": ("gce_vtpm_rsa/sibling_ecc_ek_leaf_same_chain.pem",
                            ["gce_vtpm_rsa/root_gcp_ek_ak_ca_root.pem"],
                            ["gce_vtpm_rsa/intermediate_gcp_ek_ak_ca_intermediate_v3.pem"]),
}

# Certificates that chain (to themselves or their roots) but are CAs, not EKs.
CAS = {
    "nuvoton_root_non_der": ("nuvoton_root_nonder/NUVO_2110.pem",
                             ["nuvoton_root_nonder/NUVO_2110.pem"]),
    "intel_intermediate_with_ek_eku": ("vendor_ca_only/INTEL_I.pem",
                                       ["vendor_ca_only/INTEL_RT.pem"]),
    "infineon_ca_with_ek_eku": ("vendor_ca_only/IFX_RSA_034.pem",
                                ["vendor_ca_only/INF_RSA_010RT.pem"]),
}


def _read(*names: str) -> list[bytes]:
    return [vector_dir("ekcerts", *name.split("/")).read_bytes() for name in names]


def _refused(leaf: bytes, roots: list[bytes], at: datetime = AT) -> EvidenceError:
    with pytest.raises(EvidenceError) as refused:
        verify_ek_certificate(leaf, roots, at=at)
    assert refused.value.reason is Reason.EK_CHAIN_INVALID
    return refused.value


@pytest.mark.parametrize("case", sorted(EK_LEAVES))
def test_every_real_ek_certificate_still_verifies(case: str) -> None:
    leaf, roots, intermediates = EK_LEAVES[case]
    verified = verify_ek_certificate(_read(leaf)[0], _read(*roots), _read(*intermediates), at=AT)
    assert len(verified.chain) >= 2


@pytest.mark.parametrize("case", sorted(CAS))
def test_a_vendor_ca_chains_but_is_not_an_ek_certificate(case: str) -> None:
    leaf, roots = CAS[case]
    verify_chain(_read(leaf)[0], _read(*roots), at=AT)  # the chain alone holds
    assert "CA" in _refused(_read(leaf)[0], _read(*roots)).message


def test_a_tls_server_certificate_from_an_ek_root_is_refused() -> None:
    ca = EKRootCA.create()
    tls = ca.tls_server_certificate(rsa_key())
    verify_chain(tls, [ca.pem], at=datetime.now(UTC))  # what used to be enough
    refused = _refused(tls, [ca.pem], datetime.now(UTC))
    assert "serverAuth" in refused.message


def test_a_tls_client_certificate_with_an_ek_like_key_usage_is_refused() -> None:
    ca = EKRootCA.create()
    refused = _refused(ca.tls_client_certificate(rsa_key()), [ca.pem], datetime.now(UTC))
    assert "clientAuth" in refused.message


def test_a_subordinate_ca_with_the_ek_eku_is_refused() -> None:
    ca = EKRootCA.create()
    sub = ca.ca_certificate(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert "CA" in _refused(sub, [ca.pem], datetime.now(UTC)).message


def test_a_certificate_without_any_ek_mark_is_refused() -> None:
    ca = EKRootCA.create()
    signing = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    plain = ca.issue(rsa_key(), [(signing, True)], subject="anything")
    assert "nothing of the TCG EK profile" in _refused(plain, [ca.pem], datetime.now(UTC)).message
    bare = ca.issue(rsa_key(), [], subject="no extensions at all")
    _refused(bare, [ca.pem], datetime.now(UTC))


def test_a_leaf_signing_certificates_is_refused_without_basic_constraints() -> None:
    ca = EKRootCA.create()
    usage = x509.KeyUsage(False, False, True, False, False, True, False, False, False)
    leaf = ca.issue(rsa_key(), [(usage, True), (x509.ExtendedKeyUsage([EK_EKU]), False)])
    assert "signing certificates" in _refused(leaf, [ca.pem], datetime.now(UTC)).message


def test_an_ek_certificate_from_the_test_ca_passes() -> None:
    ca = EKRootCA.create()
    ek = ca.ek_certificate(rsa_key())
    verify_ek_certificate(ek, [ca.pem], at=datetime.now(UTC))
    profile = read_profile(ek)
    assert profile.tpm_san and profile.eku == ("2.23.133.8.1",) and not profile.is_ca


def test_a_repeated_extension_is_refused() -> None:
    """Two basicConstraints: one reader may see cA false, another true."""
    ca = EKRootCA.create()
    ek = bytearray(ca.ek_certificate(rsa_key()))
    # Rename the SAN (2.5.29.17) to basicConstraints (2.5.29.19): now it appears twice.
    at = bytes(ek).index(bytes.fromhex("0603551d11"))
    ek[at + 4] = 0x13
    with pytest.raises(EvidenceError, match="appears twice"):
        check_ek_profile(bytes(ek))
