"""A PCR extended by someone else between PolicyPCR and Sign: retried, then exit 3.

The extender is real (a PCR_Extend on the same swtpm) and deterministic: it lands
right before TPM2_Sign, the moment a concurrent process's extend voids the policy
session with TPM_RC_PCR_CHANGED.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import ESAPI, ESYS_TR, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA
from tpm2_pytss.constants import TPM2_ALG

from attest.errors import EXIT_ENVIRONMENT, TPMEnvironmentError
from attest.evidence.pcrs import PCRSelection
from attest.tpm import contention
from attest.tpm import keys as signing
from attest.tpm.device import open_tpm
from attest.tpm.hierarchy import load_identity
from attest.tpm.quote import create_quote
from tests.conftest import Host

# IMA's PCR, the usual extender outside attest: sealed by no key and quoted by no
# artifact here (each test has a simulator of its own). Not PCR 16: libtpms leaves the
# PCR update counter alone for it (and 21-23), so it voids no session.
_BYSTANDER_PCR = ESYS_TR.PCR10


def _extend_before(monkeypatch: pytest.MonkeyPatch, command: str, times: int) -> list[int]:
    """Make the next ``times`` calls of ESAPI ``command`` follow a PCR_Extend; returns the
    extends done."""
    done: list[int] = []
    original: Callable[..., Any] = getattr(ESAPI, command)

    def interleaved(self: ESAPI, *args: Any, **kwargs: Any) -> Any:
        if len(done) < times:
            digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256,
                             digest=TPMU_HA(sha256=hashlib.sha256(b"other").digest()))
            self.pcr_extend(_BYSTANDER_PCR, TPML_DIGEST_VALUES([digest]))
            done.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ESAPI, command, interleaved)
    return done


def _extend_before_sign(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    return _extend_before(monkeypatch, "sign", times)


def test_a_pcr_extended_during_the_policy_session_is_retried(
        fresh_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_host.ok("key", "create")
    key = signing.load_key(fresh_host.home, signing.DEFAULT_KEY)
    data = b"signed despite a concurrent extend"
    extends = _extend_before_sign(monkeypatch, times=2)
    with open_tpm(fresh_host.sim.tcti) as tpm:
        signature = signing.sign_data(tpm, key, data)
    assert len(extends) == 2  # two attempts were voided, the third signed
    public = serialization.load_pem_public_key(key.public_pem())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signing.signature_to_der(signature), data, ec.ECDSA(hashes.SHA256()))


def test_pcr_contention_outlasting_the_retries_is_an_environment_error(
        fresh_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_host.ok("key", "create")
    key = signing.load_key(fresh_host.home, signing.DEFAULT_KEY)
    _extend_before_sign(monkeypatch, times=contention.ATTEMPTS)
    with open_tpm(fresh_host.sim.tcti) as tpm, pytest.raises(TPMEnvironmentError) as raised:
        signing.sign_data(tpm, key, b"never signed")
    assert raised.value.exit_code == EXIT_ENVIRONMENT
    assert "PCR contention" in raised.value.message


def test_attest_run_exits_3_when_pcr_contention_outlasts_the_retries(
        fresh_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "sh", "-c", "true")
    policy = tmp_path / "policy.yaml"
    fresh_host.ok("policy", "init", "--from-host", "--out", str(policy))
    marker = tmp_path / "must-not-exist"
    _extend_before_sign(monkeypatch, times=contention.ATTEMPTS)
    done = fresh_host.run("run", "--policy", str(policy), "--", "sh", "-c", f"touch {marker}")
    assert done.exit_code == EXIT_ENVIRONMENT, done.output
    assert "PCR contention" in done.output
    assert "hint:" in done.output
    assert not marker.exists()


def test_a_quote_that_never_matches_its_read_is_an_environment_error(
        fresh_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """PCR_Read then Quote: an extend in between every time is contention, exit 3."""
    identity = load_identity(fresh_host.home)
    _extend_before(monkeypatch, "quote", times=contention.ATTEMPTS)
    with open_tpm(fresh_host.sim.tcti) as tpm, pytest.raises(TPMEnvironmentError) as raised:
        create_quote(tpm, identity, PCRSelection.parse("sha256:0,10"), b"nonce")
    assert raised.value.exit_code == EXIT_ENVIRONMENT
    assert "PCR contention" in raised.value.message
