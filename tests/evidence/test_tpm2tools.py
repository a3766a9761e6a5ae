"""tpm2-tools file formats: both PCR file forms, public keys in every form, signatures."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from evidence_helpers import load_expected, pcr_values, vector_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.errors import MalformedInput
from attest.evidence.pcrs import PCRSelection
from attest.evidence.quote import verify_quote
from attest.evidence.structures import Public
from attest.evidence.tpm2tools import (
    read_attest,
    read_pcr_values,
    read_pcrs,
    read_public,
    read_serialized_pcrs,
    read_signature,
    write_attest,
    write_public,
    write_serialized_pcrs,
    write_signature,
)

GCE = ("quotes", "gce_cos85_nonce9009")


def _gce_pcrs(bank: str) -> dict[tuple[str, int], bytes]:
    return pcr_values(bank, load_expected(vector_dir(*GCE))["banks"][bank]["pcrs"])


def test_serialized_pcrs_round_trip_with_their_selection() -> None:
    values = {**_gce_pcrs("sha1"), **_gce_pcrs("sha256")}
    selection = PCRSelection.parse("sha1:0-23+sha256:0-23")
    data = write_serialized_pcrs(selection, values)
    assert len(data) == 132 + 4 + 532 * 6
    assert read_serialized_pcrs(data) == (selection, values)
    assert read_pcrs(data) == (selection, values)


def test_bare_values_are_read_with_a_pcr_list_even_for_all_24() -> None:
    values = _gce_pcrs("sha256")
    selection = PCRSelection.parse("sha256:all")
    data = b"".join(values[key] for key in selection)
    assert read_pcr_values(data, selection) == values
    assert read_pcrs(data, selection) == (selection, values)


@pytest.mark.parametrize("size", [0, 135, 136 + 531, 136 + 533])
def test_a_pcr_file_of_the_wrong_size_is_malformed_input(size: int) -> None:
    with pytest.raises(MalformedInput):
        read_serialized_pcrs(bytes(size))


def test_bare_values_that_do_not_fit_the_list_are_malformed_input() -> None:
    with pytest.raises(MalformedInput):
        read_pcr_values(bytes(33), PCRSelection.parse("sha256:0"))


def test_a_serialized_file_with_fewer_values_than_selected_is_malformed() -> None:
    selection = PCRSelection.parse("sha256:0,1")
    data = bytearray(write_serialized_pcrs(selection, {k: bytes(32) for k in selection}))
    data[136:140] = (1).to_bytes(4, "little")  # the digest list now claims one value
    with pytest.raises(MalformedInput):
        read_serialized_pcrs(bytes(data))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_corrupted_pcr_files_raise_only_malformed_input(data: st.DataObject) -> None:
    selection = PCRSelection.parse("sha256:0-9")
    raw = bytearray(write_serialized_pcrs(selection, {k: bytes(32) for k in selection}))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MalformedInput):
        read_serialized_pcrs(bytes(raw))


def test_a_gce_quote_verifies_from_files_in_tpm2_tools_formats() -> None:
    d = vector_dir(*GCE)
    ak = read_public((d / "ak_pub.tpmt_public.bin").read_bytes())
    assert isinstance(ak, Public)
    selection, values = read_pcrs(write_serialized_pcrs(PCRSelection.parse("sha256:all"),
                                                        _gce_pcrs("sha256")))
    for key in (ak, read_public(write_public(ak, "tpm2b")), read_public(write_public(ak, "pem"))):
        facts = verify_quote(
            write_attest(read_attest((d / "quote_sha256.tpms_attest.bin").read_bytes())),
            write_signature(read_signature((d / "sig_sha256.tpmt_signature.bin").read_bytes())),
            key, expected_extra_data=bytes.fromhex("9009"), pcr_values=values,
        )
        assert facts.selection == selection


def test_public_forms_round_trip() -> None:
    ak = read_public((vector_dir(*GCE) / "ak_pub.tpmt_public.bin").read_bytes())
    assert isinstance(ak, Public)
    assert read_public(write_public(ak, "tpm2b")) == ak
    assert read_public(write_public(ak, "tpmt")) == ak
    pem = read_public(write_public(ak, "pem"))
    assert isinstance(pem, rsa.RSAPublicKey)


def test_a_pem_certificate_gives_its_key() -> None:
    data = (vector_dir("quotes", "cmc_rsa_ak_pcr1_4") / "ak_cert.pem").read_bytes()
    key = read_public(data)
    assert key == x509.load_pem_x509_certificate(data).public_key()


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"-----BEGIN PUBLIC KEY-----\nAAAA\n", b"\x00\x05abc"]
)
def test_unreadable_public_keys_are_malformed_input(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        read_public(data)


@pytest.mark.skipif(shutil.which("tpm2_checkquote") is None, reason="tpm2_checkquote not installed")
@pytest.mark.parametrize("form", ["pem", "tpm2b"])
def test_tpm2_checkquote_accepts_the_files_attest_writes(tmp_path: Path, form: str) -> None:
    d = vector_dir(*GCE)
    ak = read_public((d / "ak_pub.tpmt_public.bin").read_bytes())
    assert isinstance(ak, Public)
    (tmp_path / "ak").write_bytes(write_public(ak, form))
    (tmp_path / "pcrs").write_bytes(
        write_serialized_pcrs(PCRSelection.parse("sha256:all"), _gce_pcrs("sha256"))
    )
    run = subprocess.run(
        ["tpm2_checkquote", "-u", str(tmp_path / "ak"),
         "-m", str(d / "quote_sha256.tpms_attest.bin"),
         "-s", str(d / "sig_sha256.tpmt_signature.bin"),
         "-f", str(tmp_path / "pcrs"), "-g", "sha256", "-q", "9009"],
        capture_output=True, check=False, timeout=30,
    )
    assert run.returncode == 0, run.stderr.decode()
