"""Real EK certificates and CA chains from ../shared/vectors/ekcerts, at pinned times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from evidence_helpers import vector_dir

from attest.errors import EvidenceError
from attest.evidence.ekcert import parse_ek_certificate, verify_chain
from attest.evidence.signatures import public_key
from attest.evidence.structures import parse_public
from attest.reasons import Reason

AT = datetime(2024, 6, 1, tzinfo=UTC)  # inside every vector's validity


def _read(*names: str) -> list[bytes]:
    return [vector_dir("ekcerts", *name.split("/")).read_bytes() for name in names]


CHAINS = {
    "stm_rsa_padded_to_globalsign": (
        "stm_rsa/ek_leaf_as_read_from_nv_with_ff_padding.der",
        ["stm_rsa/anchor_GS_TPM_RT.pem"],
        ["stm_rsa/intermediate_STM_RSA_05I.pem", "stm_rsa/root_STM_RSA_RT.pem"],
    ),
    "stm_rsa_to_stm_root": (
        "stm_rsa/ek_leaf.der", ["stm_rsa/root_STM_RSA_RT.pem"],
        ["stm_rsa/intermediate_STM_RSA_05I.pem"],
    ),
    "stm_ecc_partial_chain": (
        "stm_ecc/ek_leaf.der", ["stm_ecc/root_STM_ECC_01RT.pem"],
        ["stm_ecc/intermediate_STM_ECC_01I.pem"],
    ),
    "gce_ecc": (
        "gce_vtpm_ecc/ek_leaf.pem", ["gce_vtpm_ecc/root_tpm_ek_root_1.pem"],
        ["gce_vtpm_ecc/intermediate_tpm_ek_intermediate_3.pem"],
    ),
    "gce_ecc_sibling_rsa": (
        "gce_vtpm_ecc/sibling_rsa_ek_leaf_same_chain.pem", ["gce_vtpm_ecc/root_tpm_ek_root_1.pem"],
        ["gce_vtpm_ecc/intermediate_tpm_ek_intermediate_3.pem"],
    ),
    "gce_rsa_no_san": (
        "gce_vtpm_rsa/ek_leaf.pem", ["gce_vtpm_rsa/root_gcp_ek_ak_ca_root.pem"],
        ["gce_vtpm_rsa/intermediate_gcp_ek_ak_ca_intermediate_v3.pem"],
    ),
    "gce_rsa_sibling_ecc": (
        "gce_vtpm_rsa/sibling_ecc_ek_leaf_same_chain.pem",
        ["gce_vtpm_rsa/root_gcp_ek_ak_ca_root.pem"],
        ["gce_vtpm_rsa/intermediate_gcp_ek_ak_ca_intermediate_v3.pem"],
    ),
    "nuvoton_2110_self": (
        "nuvoton_root_nonder/NUVO_2110.pem", ["nuvoton_root_nonder/NUVO_2110.pem"], []),
    "nuvoton_ntc2_self": (
        "nuvoton_root_nonder/NTC2.pem", ["nuvoton_root_nonder/NTC2.pem"], []),
    "infineon_rsa_034": (
        "vendor_ca_only/IFX_RSA_034.pem", ["vendor_ca_only/INF_RSA_010RT.pem"], []),
    "infineon_ecc_034": (
        "vendor_ca_only/IFX_ECC_034.pem", ["vendor_ca_only/INF_ECC_010RT.pem"], []),
    "intel_intermediate": ("vendor_ca_only/INTEL_I.pem", ["vendor_ca_only/INTEL_RT.pem"], []),
}


@pytest.mark.parametrize("case", sorted(CHAINS))
def test_vector_chain_validates_at_a_pinned_time(case: str) -> None:
    leaf, roots, intermediates = CHAINS[case]
    verified = verify_chain(_read(leaf)[0], _read(*roots), _read(*intermediates), at=AT)
    assert verified.chain[0] == verified.leaf.der


def test_intermediates_found_among_the_roots_are_used() -> None:
    leaf = _read("gce_vtpm_ecc/ek_leaf.pem")[0]
    roots = _read("gce_vtpm_ecc/root_tpm_ek_root_1.pem",
                  "gce_vtpm_ecc/intermediate_tpm_ek_intermediate_3.pem")
    assert verify_chain(leaf, roots, at=AT).chain


def test_a_pem_bundle_of_roots_is_split() -> None:
    leaf = _read("stm_rsa/ek_leaf.der")[0]
    bundle = b"\n".join(
        _read("stm_rsa/intermediate_STM_RSA_05I.pem", "stm_rsa/root_STM_RSA_RT.pem")
    )
    # every root is an anchor, so the path stops at the first one: the intermediate
    assert len(verify_chain(leaf, [bundle], at=AT).chain) == 2


def test_nv_padding_is_trimmed_and_reported() -> None:
    ek = parse_ek_certificate(_read("stm_rsa/ek_leaf_as_read_from_nv_with_ff_padding.der")[0])
    assert ek.trimmed == 431
    assert ek.der == _read("stm_rsa/ek_leaf.der")[0]


def test_garbage_after_the_der_is_refused() -> None:
    with pytest.raises(EvidenceError) as err:
        parse_ek_certificate(_read("stm_rsa/ek_leaf.der")[0] + b"\xff\x00junk")
    assert err.value.reason is Reason.EK_CHAIN_INVALID


@pytest.mark.parametrize("end", [0, 1, 3, 100, 1168])
def test_a_truncated_certificate_is_refused(end: int) -> None:
    with pytest.raises(EvidenceError):
        parse_ek_certificate(_read("stm_rsa/ek_leaf.der")[0][:end])


def test_tcg_profile_empty_subject_with_critical_san_is_read() -> None:
    ek = parse_ek_certificate(_read("stm_rsa/ek_leaf.der")[0])
    assert ek.subject_empty and ek.san_critical and ek.ek_eku
    assert ek.tpm is not None
    assert (ek.tpm.manufacturer, ek.tpm.model) == ("id:53544D20", "ST33HTPHAHB4")


def test_newer_gce_profile_without_san_or_eku_is_read() -> None:
    ek = parse_ek_certificate(_read("gce_vtpm_rsa/ek_leaf.pem")[0])
    assert not ek.subject_empty and ek.tpm is None and not ek.ek_eku


def test_nuvoton_non_der_root_is_read_through_openssl() -> None:
    data = _read("nuvoton_root_nonder/NUVO_2110.pem")[0]
    with pytest.raises(ValueError):
        x509.load_pem_x509_certificate(data)  # why the OpenSSL fallback exists
    assert parse_ek_certificate(data).parsed_by == "openssl"


def test_an_expired_certificate_is_refused() -> None:
    leaf, roots, intermediates = CHAINS["stm_rsa_to_stm_root"]
    with pytest.raises(EvidenceError) as err:
        verify_chain(_read(leaf)[0], _read(*roots), _read(*intermediates),
                     at=datetime(2028, 7, 12, tzinfo=UTC))
    assert err.value.reason is Reason.EK_CHAIN_INVALID
    assert "expired" in err.value.message


def test_a_certificate_from_another_vendor_is_refused() -> None:
    with pytest.raises(EvidenceError) as err:
        verify_chain(_read("stm_rsa/ek_leaf.der")[0], _read("vendor_ca_only/INTEL_RT.pem"),
                     at=AT)
    assert err.value.reason is Reason.EK_CHAIN_INVALID


def test_a_missing_intermediate_breaks_the_chain() -> None:
    with pytest.raises(EvidenceError):
        verify_chain(_read("stm_rsa/ek_leaf.der")[0], _read("stm_rsa/root_STM_RSA_RT.pem"),
                     at=AT)


def test_a_naive_verification_time_is_misuse() -> None:
    with pytest.raises(ValueError, match="timezone"):
        verify_chain(_read("stm_rsa/ek_leaf.der")[0], _read("stm_rsa/root_STM_RSA_RT.pem"),
                     at=datetime(2024, 1, 1))


# AK certificates in ../quotes use the same chain validation.

def test_gce_ak_certificate_chains_and_holds_the_ak() -> None:
    d = vector_dir("quotes", "gce_cos85_nonce9009")
    verified = verify_chain(
        (d / "ak_cert.der").read_bytes(),
        [(d / "chain_root_tpm_ek_root_1.pem").read_bytes()],
        [(d / "chain_intermediate_tpm_ek_intermediate_2.pem").read_bytes()],
        at=AT,
    )
    ak = parse_public((d / "ak_pub.tpmt_public.bin").read_bytes())
    assert verified.leaf.public_key.public_numbers() == public_key(ak).public_numbers()


def test_cmc_ak_certificate_chains_to_its_ecdsa_root_not_to_the_wrong_one() -> None:
    d = vector_dir("quotes", "cmc_rsa_ak_pcr1_4")
    at = datetime(2023, 1, 1, tzinfo=UTC)
    leaf = (d / "ak_cert.pem").read_bytes()
    verify_chain(leaf, [(d / "ca.pem").read_bytes()], at=at)
    with pytest.raises(EvidenceError) as err:
        verify_chain(leaf, [(d / "ca_wrong.pem").read_bytes()], at=at)
    assert err.value.reason is Reason.EK_CHAIN_INVALID
