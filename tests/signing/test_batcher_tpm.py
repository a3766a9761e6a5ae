"""The Batcher with a real swtpm: a PCR-bound key signs the batch value inside the TPM,
and every request's proof and the one signature verify with the key's public key."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest.errors import PCRPolicyMismatch
from attest.signing import batch
from attest.signing.batcher import Batcher, Signed
from attest.tpm.device import TPM, open_tpm
from attest.tpm.keys import SigningKey, load_key, sign_digest, signature_to_der
from attest.tpm.pcr import extend_data
from tests.conftest import Host


def _tpm_signer(tpm: TPM, keys: dict[str, SigningKey],
                ) -> tuple[list[bytes], Callable[[str, bytes], bytes]]:
    signed: list[bytes] = []

    def sign(key_id: str, value: bytes) -> bytes:
        signed.append(value)  # one signer thread: the TPM sees one command at a time
        return signature_to_der(sign_digest(tpm, keys[key_id], value))
    return signed, sign


def _pae(n: int) -> bytes:
    body = b'{"n": %d}' % n
    return b"DSSEv1 16 application/json %d %s" % (len(body), body)


def test_concurrent_requests_signed_in_batches_by_a_tpm_key(host: Host) -> None:
    host.ok("key", "create", "--name", "batch")
    key = load_key(host.home, "batch")
    public = serialization.load_pem_public_key(key.public_pem())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    results: dict[int, Signed[bytes]] = {}
    lock = threading.Lock()
    with open_tpm(host.sim.tcti) as tpm:
        signed, sign = _tpm_signer(tpm, {"batch": key})

        def requester(start: int) -> None:
            for n in range(start, start + 8):
                got = batcher.submit("batch", "policy", _pae(n)).result(60)
                with lock:
                    results[n] = got

        with Batcher(sign, window=0.02) as batcher:
            threads = [threading.Thread(target=requester, args=(8 * t,)) for t in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert sorted(results) == list(range(64))
    assert len(signed) < 64  # fewer TPM signatures than requests
    for n, got in results.items():
        value = batch.signed_value(_pae(n), got.membership)
        public.verify(got.signature, value, ec.ECDSA(Prehashed(hashes.SHA256())))
    assert {r.value for r in results.values()} == set(signed)


def test_changed_sealed_pcrs_fail_the_whole_batch(fresh_host: Host) -> None:
    fresh_host.ok("key", "create", "--name", "sealed", "--pcrs", "sha256:16")
    key = load_key(fresh_host.home, "sealed")
    with open_tpm(fresh_host.sim.tcti) as tpm:
        extend_data(tpm, 16, b"an unexpected measurement")
        _, sign = _tpm_signer(tpm, {"sealed": key})
        with Batcher(sign, window=0.05) as batcher:
            futures = [batcher.submit("sealed", "p", _pae(n)) for n in range(4)]
            for future in futures:
                with pytest.raises(PCRPolicyMismatch):
                    future.result(60)
