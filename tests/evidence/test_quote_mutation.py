"""Flipping any byte of a real TPMS_ATTEST or TPMT_SIGNATURE is refused with an EvidenceError."""

from __future__ import annotations

import pytest
from evidence_helpers import load_expected, pcr_values, vector_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.errors import EvidenceError
from attest.evidence.quote import verify_quote
from attest.evidence.structures import Public, parse_public


def _gce() -> tuple[bytes, bytes, Public, bytes, dict[tuple[str, int], bytes]]:
    d = vector_dir("quotes", "gce_cos85_nonce9009")
    expected = load_expected(d)
    return (
        (d / "quote_sha256.tpms_attest.bin").read_bytes(),
        (d / "sig_sha256.tpmt_signature.bin").read_bytes(),
        parse_public((d / "ak_pub.tpmt_public.bin").read_bytes()),
        bytes.fromhex(expected["nonce_hex"]),
        pcr_values("sha256", expected["banks"]["sha256"]["pcrs"]),
    )


def _refused(quote: bytes, sig: bytes) -> None:
    _, _, ak, nonce, values = _gce()
    with pytest.raises(EvidenceError):
        verify_quote(quote, sig, ak, expected_extra_data=nonce, pcr_values=values)


def test_the_unmodified_quote_verifies() -> None:
    quote, sig, ak, nonce, values = _gce()
    verify_quote(quote, sig, ak, expected_extra_data=nonce, pcr_values=values)


def test_flipping_the_low_bit_of_each_byte_is_refused() -> None:
    quote, sig, *_ = _gce()
    for i in range(len(quote)):
        _refused(quote[:i] + bytes([quote[i] ^ 1]) + quote[i + 1 :], sig)
    for i in range(len(sig)):
        _refused(quote, sig[:i] + bytes([sig[i] ^ 1]) + sig[i + 1 :])


@settings(max_examples=200, deadline=None)
@given(target=st.sampled_from(["quote", "signature"]), data=st.data())
def test_any_single_byte_change_is_refused(target: str, data: st.DataObject) -> None:
    quote, sig, *_ = _gce()
    raw = bytearray(quote if target == "quote" else sig)
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    if target == "quote":
        _refused(bytes(raw), sig)
    else:
        _refused(quote, bytes(raw))
