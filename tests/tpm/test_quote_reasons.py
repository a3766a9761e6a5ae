"""Reason codes of quote verification produced from real swtpm quotes, not synthetic bytes."""

from __future__ import annotations

import os

import pytest

from attest.errors import EvidenceError
from attest.evidence.pcrs import PCRSelection
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.structures import parse_public_tpm2b
from attest.reasons import Reason
from attest.simulator import Simulator
from attest.tpm.device import open_tpm
from attest.tpm.hierarchy import HostIdentity, load_identity
from attest.tpm.quote import Quote, create_quote
from tests.conftest import Host

SELECTION = PCRSelection.parse("sha256:0,15")


def _quote(sim: Simulator, identity: HostIdentity, nonce: bytes) -> Quote:
    with open_tpm(sim.tcti) as tpm:
        return create_quote(tpm, identity, SELECTION, nonce)


def _verify(identity: HostIdentity, quote: Quote, **kwargs: object) -> QuoteFacts:
    return verify_quote(quote.message, quote.signature, parse_public_tpm2b(identity.ak_public),
                        expected_extra_data=quote.nonce, pcr_values=quote.pcr_values,
                        **kwargs)  # type: ignore[arg-type]


def _reason(identity: HostIdentity, quote: Quote, **kwargs: object) -> Reason | None:
    with pytest.raises(EvidenceError) as caught:
        _verify(identity, quote, **kwargs)
    return caught.value.reason


def test_a_real_quote_verifies(host: Host) -> None:
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, os.urandom(32))
    facts = _verify(identity, quote, required_pcrs=SELECTION)
    assert facts.pcrs["sha256"][15] == quote.pcr_values[("sha256", 15)]
    assert facts.clock_info.safe


def test_required_pcr_outside_the_selection(host: Host) -> None:
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, b"n")
    assert _reason(identity, quote, required_pcrs=PCRSelection.parse("sha256:0,7,15")) is (
        Reason.PCR_SELECTION_INSUFFICIENT)


def test_claimed_values_that_are_not_the_quoted_ones(host: Host) -> None:
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, b"n")
    forged = dict(quote.pcr_values)
    forged[("sha256", 15)] = b"\x01" * 32
    tampered = Quote(quote.message, quote.signature, quote.selection, forged, quote.ak_public,
                     quote.nonce)
    assert _reason(identity, tampered) is Reason.PCR_DIGEST_MISMATCH


def test_values_outside_the_selection_are_never_attested(host: Host) -> None:
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, b"n")
    claimed = dict(quote.pcr_values) | {("sha256", 7): b"\x07" * 32}
    facts = verify_quote(quote.message, quote.signature, parse_public_tpm2b(identity.ak_public),
                         expected_extra_data=b"n", pcr_values=claimed)
    assert 7 not in facts.pcrs["sha256"]


def test_another_nonce_and_another_ak(host: Host, fresh_host: Host) -> None:
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, b"n")
    with pytest.raises(EvidenceError) as caught:
        verify_quote(quote.message, quote.signature, parse_public_tpm2b(identity.ak_public),
                     expected_extra_data=b"m", pcr_values=quote.pcr_values)
    assert caught.value.reason is Reason.BINDING_MISMATCH
    other_ak = parse_public_tpm2b(load_identity(fresh_host.home).ak_public)
    with pytest.raises(EvidenceError) as caught:
        verify_quote(quote.message, quote.signature, other_ak, expected_extra_data=b"n",
                     pcr_values=quote.pcr_values)
    assert caught.value.reason is Reason.QUOTE_SIGNATURE_INVALID


def test_every_flipped_byte_of_a_real_quote_is_refused(host: Host) -> None:
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, b"flip")
    ak = parse_public_tpm2b(identity.ak_public)
    for blob in ("message", "signature"):
        original = getattr(quote, blob)
        for i in range(len(original)):
            mutated = bytearray(original)
            mutated[i] ^= 0x01
            args = {"message": quote.message, "signature": quote.signature, blob: bytes(mutated)}
            with pytest.raises(EvidenceError):
                verify_quote(args["message"], args["signature"], ak, expected_extra_data=b"flip",
                             pcr_values=quote.pcr_values)


def test_a_certification_presented_as_a_quote_is_malformed(host: Host, tmp_path: object) -> None:
    """Signed by the AK, so the signature holds; but it is a TPM2_Certify, not a quote."""
    from pathlib import Path

    folder = Path(str(tmp_path)) / "c"
    host.ok("key", "create", "--name", "certq")
    host.ok("key", "certify", "--name", "certq", "--nonce", "01", "--out-dir", str(folder))
    identity = load_identity(host.home)
    with pytest.raises(EvidenceError) as caught:
        verify_quote((folder / "certify.msg").read_bytes(), (folder / "certify.sig").read_bytes(),
                     parse_public_tpm2b(identity.ak_public), expected_extra_data=b"\x01",
                     pcr_values=None)
    assert caught.value.reason is Reason.QUOTE_MALFORMED


def test_a_non_restricted_key_is_not_an_ak(host: Host) -> None:
    """A signing key could sign a forged TPMS_ATTEST: refused as an AK before any signature."""
    import json

    host.ok("key", "create", "--name", "notak")
    record = json.loads((host.home / "keys" / "notak" / "key.json").read_text())
    identity = load_identity(host.home)
    quote = _quote(host.sim, identity, b"n")
    with pytest.raises(EvidenceError) as caught:
        verify_quote(quote.message, quote.signature,
                     parse_public_tpm2b(bytes.fromhex(record["public"])),
                     expected_extra_data=b"n", pcr_values=quote.pcr_values)
    assert caught.value.reason is Reason.KEY_ATTRIBUTES_INVALID


def test_clock_not_safe_after_an_unclean_stop(fresh_host: Host) -> None:
    """swtpm clears clockInfo.safe when it was killed without TPM2_Shutdown."""
    identity = load_identity(fresh_host.home)
    fresh_host.sim.kill()
    fresh_host.sim.start()
    quote = _quote(fresh_host.sim, identity, b"s")
    assert _reason(identity, quote) is Reason.CLOCK_ROLLBACK
    assert _verify(identity, quote, require_safe=False).clock_info.safe is False
