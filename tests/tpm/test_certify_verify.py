"""A real TPM2_Certify of a signing key, checked by the pure verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.errors import EvidenceError
from attest.evidence.certify import verify_certification
from attest.evidence.structures import parse_public_tpm2b
from attest.reasons import Reason
from attest.tpm.hierarchy import load_identity
from tests.conftest import Host


@pytest.fixture
def certified(host: Host, tmp_path: Path) -> tuple[Host, Path, bytes]:
    host.ok("key", "create", "--name", "c")
    host.ok("key", "certify", "--name", "c", "--nonce", "abcd", "--out-dir", str(tmp_path / "c"))
    record = json.loads((host.home / "keys" / "c" / "key.json").read_text())
    return host, tmp_path / "c", bytes.fromhex(record["policy_digest"])


def _verify(host: Host, folder: Path, policy: bytes, **kwargs: bytes) -> object:
    ak = parse_public_tpm2b(load_identity(host.home).ak_public)
    return verify_certification((folder / "certify.msg").read_bytes(),
                                (folder / "certify.sig").read_bytes(), ak,
                                (folder / "key.pub").read_bytes(), expected_policy=policy,
                                **kwargs)


def test_certified_key_facts(certified: tuple[Host, Path, bytes]) -> None:
    host, folder, policy = certified
    facts = _verify(host, folder, policy, expected_extra_data=bytes.fromhex("abcd"))
    assert facts.auth_policy == policy  # type: ignore[attr-defined]


@pytest.mark.parametrize(("change", "reason"), [
    ("policy", Reason.KEY_POLICY_MISMATCH),
    ("extra", Reason.KEY_NOT_CERTIFIED),
    ("signature", Reason.CERTIFY_SIGNATURE_INVALID),
])
def test_certification_refusals(certified: tuple[Host, Path, bytes], change: str,
                                reason: Reason) -> None:
    host, folder, policy = certified
    kwargs: dict[str, bytes] = {"expected_extra_data": bytes.fromhex("abcd")}
    if change == "policy":
        policy = bytes(32)
    elif change == "extra":
        kwargs["expected_extra_data"] = b"other"
    else:
        sig = bytearray((folder / "certify.sig").read_bytes())
        sig[-1] ^= 1
        (folder / "certify.sig").write_bytes(bytes(sig))
    with pytest.raises(EvidenceError) as caught:
        _verify(host, folder, policy, **kwargs)
    assert caught.value.reason is reason


def test_another_keys_public_is_not_certified(certified: tuple[Host, Path, bytes],
                                              tmp_path: Path) -> None:
    host, folder, policy = certified
    host.ok("key", "create", "--name", "other")
    other = bytes.fromhex(json.loads(
        (host.home / "keys" / "other" / "key.json").read_text())["public"])
    (folder / "key.pub").write_bytes(other)
    with pytest.raises(EvidenceError) as caught:
        _verify(host, folder, policy)
    assert caught.value.reason is Reason.KEY_NOT_CERTIFIED
