"""The wire parsers: exact on real bytes, and only our own errors on anything else."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from pathlib import Path

import pytest
from evidence_helpers import vector_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss.types import TPMS_ATTEST, TPMT_PUBLIC, TPMT_SIGNATURE

from attest.errors import EvidenceError, MalformedEvidence
from attest.evidence.pcrs import PCRSelection
from attest.evidence.structures import (
    Alg,
    CreationInfo,
    QuoteInfo,
    parse_attest,
    parse_pcr_selection,
    parse_public,
    parse_public_tpm2b,
    parse_signature,
)
from attest.reasons import Reason


def _files(suffix: str) -> list[Path]:
    root = vector_dir("quotes")
    return sorted(root.glob(f"*/*{suffix}"))


@pytest.fixture(params=["gce_cos85_nonce9009", "ga_windows_gcp_shielded_vm"])
def ak_bytes(request: pytest.FixtureRequest) -> bytes:
    return (vector_dir("quotes", request.param) / "ak_pub.tpmt_public.bin").read_bytes()


def test_every_vector_tpms_attest_parses_like_tpm2_pytss_reads_it() -> None:
    for path in _files(".tpms_attest.bin"):
        data = path.read_bytes()
        ours = parse_attest(data)
        theirs, used = TPMS_ATTEST.unmarshal(data)
        assert used == len(data)
        assert ours.type == int(theirs.type)
        assert ours.qualified_signer == bytes(theirs.qualifiedSigner)
        assert ours.extra_data == bytes(theirs.extraData)
        assert ours.clock_info.clock == theirs.clockInfo.clock
        assert ours.clock_info.reset_count == theirs.clockInfo.resetCount
        assert ours.firmware_version == theirs.firmwareVersion
        info = ours.attested
        if isinstance(info, QuoteInfo):
            assert info.pcr_digest == bytes(theirs.attested.quote.pcrDigest)
            assert info.pcr_select.marshal() == theirs.attested.quote.pcrSelect.marshal()
        else:
            assert isinstance(info, CreationInfo)
            assert info.object_name == bytes(theirs.attested.creation.objectName)


def test_every_vector_signature_parses_and_marshals_back_unchanged() -> None:
    for path in _files(".tpmt_signature.bin"):
        data = path.read_bytes()
        sig = parse_signature(data)
        assert sig.sig_alg == Alg.RSASSA
        assert sig.marshal() == data
        theirs, _ = TPMT_SIGNATURE.unmarshal(data)
        assert sig.rsa == bytes(theirs.signature.rsassa.sig)


def test_ak_public_name_matches_tpm2_pytss(ak_bytes: bytes) -> None:
    ours = parse_public(ak_bytes)
    theirs, _ = TPMT_PUBLIC.unmarshal(ak_bytes)
    assert ours.name == bytes(theirs.get_name())
    assert ours.marshal() == ak_bytes
    assert parse_public_tpm2b(ours.marshal_tpm2b()) == ours


def test_a_parsed_key_s_name_is_the_one_its_fields_hash_to(ak_bytes: bytes) -> None:
    """parse_public fills Public.name from the bytes it was given (they are its
    marshalling, checked): the same name as a copy computes from its fields."""
    ours = parse_public(ak_bytes)
    assert "name" in vars(ours)  # filled at parsing
    copy = dataclasses.replace(ours)
    assert "name" not in vars(copy)
    assert copy.name == ours.name == parse_public_tpm2b(ours.marshal_tpm2b()).name


def test_windows_creation_certification_names_the_ak() -> None:
    d = vector_dir("quotes", "ga_windows_gcp_shielded_vm")
    creation = parse_attest((d / "ak_certify_creation.tpms_attest.bin").read_bytes())
    ak = parse_public((d / "ak_pub.tpmt_public.bin").read_bytes())
    assert isinstance(creation.attested, CreationInfo)
    assert creation.attested.object_name == ak.name


def test_pcr_selection_reads_the_sparse_bitmap() -> None:
    assert parse_pcr_selection(bytes.fromhex("00000001000b03120000")) == PCRSelection.parse(
        "sha256:1,4"
    )


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("00000002000b0301000000000b03020000", "bank selected twice"),
        ("00000001000b0500000000ff", "sizeofSelect 5"),
        ("00000001000b0400000001", "PCR 24"),
        ("00000001001203010000", "unknown bank"),
        ("00000011", "17 banks"),
    ],
)
def test_pcr_selections_no_tpm_makes_are_malformed(data: str, why: str) -> None:
    with pytest.raises(MalformedEvidence):
        parse_pcr_selection(bytes.fromhex(data))


def test_every_truncation_of_every_structure_is_malformed(ak_bytes: bytes) -> None:
    parsers = [(parse_public, ak_bytes)]
    parsers += [(parse_attest, p.read_bytes()) for p in _files(".tpms_attest.bin")]
    parsers += [(parse_signature, p.read_bytes()) for p in _files(".tpmt_signature.bin")]
    for parse, data in parsers:
        for end in range(len(data)):
            with pytest.raises(MalformedEvidence):
                parse(data[:end])  # type: ignore[operator]
        with pytest.raises(MalformedEvidence):
            parse(data + b"\0")  # type: ignore[operator]


@pytest.mark.parametrize(("end", "words"), [
    (0, "TPMT_PUBLIC: needs 2 bytes at offset 0, 0 left"),
    (1, "TPMT_PUBLIC: needs 2 bytes at offset 0, 1 left"),
    (5, "TPMT_PUBLIC: needs 4 bytes at offset 4, 1 left"),
    (9, "TPMT_PUBLIC: needs 2 bytes at offset 8, 1 left"),
])
def test_a_short_read_names_what_was_needed_and_left(ak_bytes: bytes, end: int,
                                                    words: str) -> None:
    """The reader's in-place reads (u16, u32) refuse as take() always did, word for word."""
    with pytest.raises(MalformedEvidence) as caught:
        parse_public(ak_bytes[:end])
    assert caught.value.message == words
    assert caught.value.reason is Reason.KEY_ATTRIBUTES_INVALID


def test_an_oversized_length_field_is_refused_before_reading() -> None:
    data = (vector_dir("quotes", "gce_cos85_nonce9009") / "quote_sha256.tpms_attest.bin")
    raw = bytearray(data.read_bytes())
    raw[6:8] = b"\xff\xff"  # qualifiedSigner.size
    with pytest.raises(MalformedEvidence, match="exceeds the maximum"):
        parse_attest(bytes(raw))


def test_a_name_of_the_wrong_length_for_its_hash_is_malformed() -> None:
    body = struct.pack(">IH", 0xFF544347, 0x8017) + b"\x00\x05\x00\x0b\x01\x02\x03"
    with pytest.raises(MalformedEvidence, match="qualifiedSigner"):
        parse_attest(body)


def test_an_unknown_signature_scheme_is_not_allowed() -> None:
    with pytest.raises(EvidenceError) as err:
        parse_signature(bytes.fromhex("0005000b0000"))  # HMAC
    assert err.value.reason is Reason.ALG_NOT_ALLOWED


# Prefixes that get random input past the first checks and into the deeper fields.
_PREFIXES = [b"", bytes.fromhex("ff5443478018"), bytes.fromhex("ff5443478017"),
             bytes.fromhex("0001000b"), bytes.fromhex("0023000b"), bytes.fromhex("0018000b")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_PREFIXES), st.binary(max_size=400))
def test_random_bytes_raise_only_malformed_evidence(prefix: bytes, tail: bytes) -> None:
    for parse in (parse_attest, parse_signature, parse_public, parse_public_tpm2b,
                  parse_pcr_selection):
        with contextlib.suppress(EvidenceError):
            parse(prefix + tail)  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_structures_raise_only_evidence_errors(data: st.DataObject) -> None:
    paths = _files(".tpms_attest.bin") + _files(".tpmt_public.bin")
    path = data.draw(st.sampled_from(paths))
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    parse = parse_public if path.name.endswith("tpmt_public.bin") else parse_attest
    with contextlib.suppress(EvidenceError):
        parse(bytes(raw))  # type: ignore[operator]
