"""What one open TPM connection remembers (issuance speed), and that no check is weaker for it.

A signing key is loaded from its saved context after the first time, the AK's name
is computed once, the PCR banks are asked once; none of it may let a signature, a
PCR-policy refusal or an identity check come out differently.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from tpm2_pytss import TPM2B_PUBLIC, TPMS_ATTEST
from tpm2_pytss.constants import TPM2_CAP, TPM2_HT

from attest.errors import IdentityError, PCRPolicyMismatch
from attest.evidence.pcrs import PCRSelection, composite_digest
from attest.tpm.device import TPM, open_tpm
from attest.tpm.hierarchy import ak_handle, load_identity
from attest.tpm.keys import SigningKey, load_key, sign_digest, signature_to_der
from attest.tpm.pcr import active_banks, extend, read_pcrs
from attest.tpm.quote import create_quote
from tests.conftest import Host


def _verifies(key: SigningKey, digest: bytes, tss_signature: bytes) -> None:
    public, _ = TPM2B_PUBLIC.unmarshal(key.public)
    verifier = load_pem_public_key(bytes(public.to_pem()))
    assert isinstance(verifier, ec.EllipticCurvePublicKey)
    verifier.verify(signature_to_der(tss_signature), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def _loaded(tpm: TPM) -> list[int]:
    """Sessions and transient objects loaded in the TPM (swtpm has no resource manager)."""
    found: list[int] = []
    for kind in (TPM2_HT.LOADED_SESSION, TPM2_HT.TRANSIENT):
        _, data = tpm.esapi.get_capability(TPM2_CAP.HANDLES, kind << 24, 64)
        found += [int(h) for h in data.data.handles]
    return found


def test_a_key_signs_again_from_its_saved_context(host: Host) -> None:
    host.ok("key", "create", "--name", "ctx")
    key = load_key(host.home, "ctx")
    digests = [hashlib.sha256(bytes([n])).digest() for n in range(5)]
    with open_tpm(host.sim.tcti) as tpm:
        before = _loaded(tpm)
        for digest in digests:  # the first loads the key; the others restore its context
            _verifies(key, digest, sign_digest(tpm, key, digest))
        assert _loaded(tpm) == before  # the TPM flushed each session, attest each key


def test_a_context_that_no_longer_loads_is_dropped(host: Host) -> None:
    host.ok("key", "create", "--name", "stale")
    key = load_key(host.home, "stale")
    digest = hashlib.sha256(b"again").digest()
    with open_tpm(host.sim.tcti) as tpm:
        sign_digest(tpm, key, digest)
        (cache_key, saved), = tpm._contexts.items()
        blob = bytearray(bytes(saved.contextBlob))
        blob[len(blob) // 3] ^= 0xFF  # the TPM's integrity check refuses it now
        saved.contextBlob = bytes(blob)
        _verifies(key, digest, sign_digest(tpm, key, digest))
        assert bytes(tpm._contexts[cache_key].contextBlob) != bytes(blob)  # saved afresh


def test_a_saved_context_still_refuses_changed_pcrs(fresh_host: Host) -> None:
    fresh_host.ok("key", "create", "--name", "sealed")
    key = load_key(fresh_host.home, "sealed")
    digest = hashlib.sha256(b"before").digest()
    with open_tpm(fresh_host.sim.tcti) as tpm:
        _verifies(key, digest, sign_digest(tpm, key, digest))
        extend(tpm, 3, {"sha256": hashlib.sha256(b"changed firmware").digest()})
        before = _loaded(tpm)
        with pytest.raises(PCRPolicyMismatch, match="sha256:3"):
            sign_digest(tpm, key, digest)
        assert _loaded(tpm) == before  # a refused sign leaves no session behind


def test_the_ak_name_is_checked_on_every_use(host: Host) -> None:
    identity = load_identity(host.home)
    with open_tpm(host.sim.tcti) as tpm:
        ak_handle(tpm, identity)
        with pytest.raises(IdentityError, match="not the one in the host identity"):
            ak_handle(tpm, dataclasses.replace(identity, ak_name=b"\0" * 34))
        ak_handle(tpm, identity)


def test_the_banks_are_asked_once_and_handed_out_as_copies(host: Host) -> None:
    with open_tpm(host.sim.tcti) as tpm:
        banks = active_banks(tpm)
        banks.append("md5")
        assert "sha256" in active_banks(tpm)
        assert "md5" not in active_banks(tpm)


def test_a_quote_from_stale_values_reads_again(host: Host) -> None:
    identity = load_identity(host.home)
    selection = PCRSelection.parse("sha256:0,1,2")
    stale = {key: b"\x11" * 32 for key in selection}
    with open_tpm(host.sim.tcti) as tpm:
        quote = create_quote(tpm, identity, selection, b"nonce", values=stale)
        assert quote.pcr_values == read_pcrs(tpm, selection) != stale
    attest, _ = TPMS_ATTEST.unmarshal(quote.message)
    assert bytes(attest.attested.quote.pcrDigest) == composite_digest(
        selection, quote.pcr_values, "sha256")
