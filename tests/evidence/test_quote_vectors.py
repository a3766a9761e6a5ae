"""Real quotes from ../shared/vectors/quotes verify, and their negative variants fail by name."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from evidence_helpers import load_expected, pcr_values, vector_dir

from attest.errors import EvidenceError
from attest.evidence.pcrs import PCRSelection
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.structures import parse_public
from attest.reasons import Reason

GCE = ("quotes", "gce_cos85_nonce9009")
WINDOWS = ("quotes", "ga_windows_gcp_shielded_vm")
CMC = ("quotes", "cmc_rsa_ak_pcr1_4")


@pytest.mark.parametrize("bank", ["sha1", "sha256", "sha384"])
def test_gce_quote_of_each_bank_verifies_and_is_signed_with_sha256(bank: str) -> None:
    d = vector_dir(*GCE)
    expected = load_expected(d)
    entry = expected["banks"][bank]
    facts = verify_quote(
        (d / entry["quote_file"]).read_bytes(),
        (d / entry["signature_file"]).read_bytes(),
        parse_public((d / "ak_pub.tpmt_public.bin").read_bytes()),
        expected_extra_data=bytes.fromhex(expected["nonce_hex"]),
        pcr_values=pcr_values(bank, entry["pcrs"]),
        required_pcrs=PCRSelection.parse(f"{bank}:0-9"),
    )
    assert facts.signature_hash == "sha256"
    assert facts.signature_scheme == "rsassa"
    assert facts.pcrs[bank] == {int(i): bytes.fromhex(v) for i, v in entry["pcrs"].items()}
    assert facts.pcrs[bank][17] == b"\xff" * len(facts.pcrs[bank][17])
    assert facts.clock_info.safe


def test_gce_quote_with_another_nonce_is_a_binding_mismatch() -> None:
    d = vector_dir(*GCE)
    entry = load_expected(d)["banks"]["sha256"]
    with pytest.raises(EvidenceError) as err:
        verify_quote(
            (d / entry["quote_file"]).read_bytes(),
            (d / entry["signature_file"]).read_bytes(),
            parse_public((d / "ak_pub.tpmt_public.bin").read_bytes()),
            expected_extra_data=bytes.fromhex("9008"),
            pcr_values=pcr_values("sha256", entry["pcrs"]),
        )
    assert err.value.reason is Reason.BINDING_MISMATCH


def test_gce_quote_signature_of_another_bank_does_not_verify() -> None:
    d = vector_dir(*GCE)
    expected = load_expected(d)
    with pytest.raises(EvidenceError) as err:
        verify_quote(
            (d / "quote_sha256.tpms_attest.bin").read_bytes(),
            (d / "sig_sha1.tpmt_signature.bin").read_bytes(),
            parse_public((d / "ak_pub.tpmt_public.bin").read_bytes()),
            expected_extra_data=bytes.fromhex(expected["nonce_hex"]),
            pcr_values=None,
        )
    assert err.value.reason is Reason.QUOTE_SIGNATURE_INVALID


def test_gce_quote_names_the_ak_qualified_name_not_its_name() -> None:
    d = vector_dir(*GCE)
    expected = load_expected(d)
    ak = parse_public((d / "ak_pub.tpmt_public.bin").read_bytes())
    nonce = bytes.fromhex(expected["nonce_hex"])
    quote = (d / "quote_sha256.tpms_attest.bin").read_bytes()
    sig = (d / "sig_sha256.tpmt_signature.bin").read_bytes()
    facts = verify_quote(quote, sig, ak, expected_extra_data=nonce, pcr_values=None)
    assert facts.signer != ak.name
    verify_quote(quote, sig, ak, expected_extra_data=nonce, pcr_values=None,
                 expected_signer=facts.signer)
    with pytest.raises(EvidenceError) as err:
        verify_quote(quote, sig, ak, expected_extra_data=nonce, pcr_values=None,
                     expected_signer=ak.name)
    assert err.value.reason is Reason.QUOTE_SIGNATURE_INVALID


def _windows(allow_sha1: bool) -> QuoteFacts:
    d = vector_dir(*WINDOWS)
    expected = load_expected(d)
    return verify_quote(
        (d / "quote.tpms_attest.bin").read_bytes(),
        (d / "sig.tpmt_signature.bin").read_bytes(),
        parse_public((d / "ak_pub.tpmt_public.bin").read_bytes()),
        expected_extra_data=b"",
        pcr_values=pcr_values("sha1", expected["pcrs"]),
        allow_sha1=allow_sha1,
    )


def test_windows_sha1_quote_is_refused_by_policy_not_by_crypto() -> None:
    with pytest.raises(EvidenceError) as err:
        _windows(allow_sha1=False)
    assert err.value.reason is Reason.ALG_NOT_ALLOWED


def test_windows_sha1_quote_verifies_when_sha1_is_allowed() -> None:
    facts = _windows(allow_sha1=True)
    assert facts.signature_hash == "sha1"
    assert len(facts.pcrs["sha1"]) == 24


def cmc_key() -> rsa.RSAPublicKey:
    d = vector_dir(*CMC)
    key = x509.load_pem_x509_certificate((d / "ak_cert.pem").read_bytes()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _cmc(signature: str = "sig_valid", nonce: str = "nonce_hex", pcrs: str = "pcrs",
         required_pcrs: PCRSelection | None = None) -> QuoteFacts:
    d = vector_dir(*CMC)
    expected = load_expected(d)
    return verify_quote(
        (d / "quote.tpms_attest.bin").read_bytes(),
        (d / f"{signature}.tpmt_signature.bin").read_bytes(),
        cmc_key(),
        expected_extra_data=bytes.fromhex(expected[nonce]),
        pcr_values=pcr_values("sha256", expected[pcrs]),
        required_pcrs=required_pcrs,
    )


def test_cmc_sparse_selection_quote_verifies() -> None:
    facts = _cmc()
    assert sorted(facts.pcrs["sha256"]) == [1, 4]


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ({"signature": "sig_invalid"}, Reason.QUOTE_SIGNATURE_INVALID),
        ({"nonce": "wrong_nonce_hex"}, Reason.BINDING_MISMATCH),
        ({"pcrs": "wrong_pcrs"}, Reason.PCR_DIGEST_MISMATCH),
        ({"required_pcrs": PCRSelection.parse("sha256:0,1,4")}, Reason.PCR_SELECTION_INSUFFICIENT),
        ({"required_pcrs": PCRSelection.parse("sha1:1")}, Reason.PCR_SELECTION_INSUFFICIENT),
    ],
)
def test_cmc_negative_variants_fail_with_their_reason(variant: dict[str, Any],
                                                     reason: Reason) -> None:
    with pytest.raises(EvidenceError) as err:
        _cmc(**variant)
    assert err.value.reason is reason


def test_pcr_values_outside_the_selection_are_dropped_not_attested() -> None:
    d = vector_dir(*CMC)
    expected = load_expected(d)
    values = pcr_values("sha256", expected["pcrs"])
    values[("sha256", 0)] = b"\x42" * 32
    values[("sha1", 1)] = b"\x42" * 20
    facts = verify_quote(
        (d / "quote.tpms_attest.bin").read_bytes(),
        (d / "sig_valid.tpmt_signature.bin").read_bytes(),
        cmc_key(),
        expected_extra_data=bytes.fromhex(expected["nonce_hex"]),
        pcr_values=values,
    )
    assert dict(facts.pcrs) == {"sha256": {1: values[("sha256", 1)], 4: values[("sha256", 4)]}}


def test_a_missing_value_for_a_quoted_pcr_is_a_digest_mismatch() -> None:
    d = vector_dir(*CMC)
    expected = load_expected(d)
    values = pcr_values("sha256", expected["pcrs"])
    del values[("sha256", 4)]
    with pytest.raises(EvidenceError) as err:
        verify_quote(
            (d / "quote.tpms_attest.bin").read_bytes(),
            (d / "sig_valid.tpmt_signature.bin").read_bytes(),
            cmc_key(),
            expected_extra_data=bytes.fromhex(expected["nonce_hex"]),
            pcr_values=values,
        )
    assert err.value.reason is Reason.PCR_DIGEST_MISMATCH


def test_without_pcr_values_nothing_is_attested() -> None:
    d = vector_dir(*CMC)
    expected = load_expected(d)
    bare = verify_quote(
        (d / "quote.tpms_attest.bin").read_bytes(),
        (d / "sig_valid.tpmt_signature.bin").read_bytes(),
        cmc_key(),
        expected_extra_data=bytes.fromhex(expected["nonce_hex"]),
        pcr_values=None,
    )
    assert dict(bare.pcrs) == {}
    assert bare.selection == PCRSelection.parse("sha256:1,4")
