"""Keys bound to the platform state, seen from both ends: the TPM refuses to sign when the
sealed PCRs changed (or the approval is not the key's authority's), and the verifier
refuses keys bound to a state, or an authority, its policy does not name."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.errors import PCRPolicyMismatch
from attest.tpm import keys as signing
from tests.verify.rig import Rig, accepted, denied

SEALED = "sha256:0,1,2,3,4,5,6,7"


def test_pcr_changed_after_key_creation(rig: Rig) -> None:
    verifier = rig.verifier()
    accepted(verifier.verify(rig.issue()))
    rig.host.ok("pcr", "extend", "3", "--data", "new firmware")
    out = rig.tmp / "a.jws"
    result = rig.host.run("authorize", "--subject", "deploy-bot", "--out", str(out), "--", "ls")
    assert result.exit_code == 1, result.output
    assert "no longer matches" in result.stderr
    assert "sha256:3" in result.stderr
    assert not out.exists()
    with pytest.raises(PCRPolicyMismatch):
        rig.issue()  # the library refuses alike; there is no weaker key to fall back to
    # A key made in the new state signs, but the verifier trusts keys sealed to the old.
    rig.host.ok("key", "create", "--name", "after-update")
    denied(verifier.verify(rig.issue(key="after-update")), "key_policy_mismatch")
    rig.key = "after-update"  # a policy written for the new state accepts it
    accepted(rig.verifier(rig.policy()).verify(rig.issue()))


def _authority(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp / f"{name}.key", tmp / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _approve(rig: Rig, authority_key: Path, out: Path, serial: int = 1) -> signing.Approval:
    rig.host.ok("policy", "approve", "--serial", str(serial), "--authority-key",
                str(authority_key), "--pcrs", SEALED, "--out", str(out))
    return signing.Approval.from_json(out.read_text())


def _authorize(rig: Rig, approval: Path, out: Path) -> int:
    result = rig.host.run("authorize", "--subject", "deploy-bot", "--key", "signed",
                          "--approval", str(approval), "--out", str(out), "--", "ls")
    if result.exit_code:
        assert not out.exists()
    return result.exit_code


def test_approvals_by_the_keys_authority_and_by_another(rig: Rig) -> None:
    release_key, release_pub = _authority(rig.tmp, "release")
    rogue_key, rogue_pub = _authority(rig.tmp, "rogue")
    rig.host.ok("key", "create", "--name", "signed", "--authority", str(release_pub))
    rig.key = "signed"
    trusts_release = rig.verifier(rig.policy(sealed_values={}, sealed_pcrs=range(8),
                                             authority_pem=release_pub.read_bytes()))
    trusts_rogue = rig.verifier(rig.policy(sealed_values={}, sealed_pcrs=range(8),
                                           authority_pem=rogue_pub.read_bytes()))

    good = rig.tmp / "release-approval.json"
    _approve(rig, release_key, good)
    assert _authorize(rig, good, rig.tmp / "a.jws") == 0
    raw = (rig.tmp / "a.jws").read_bytes()
    denied(trusts_rogue.verify(raw), "key_policy_mismatch")
    accepted(trusts_release.verify(raw))

    # An approval by another authority: the TPM would not take it, and attest says why.
    rogue = rig.tmp / "rogue-approval.json"
    _approve(rig, rogue_key, rogue)
    result = rig.host.run("authorize", "--subject", "deploy-bot", "--key", "signed",
                          "--approval", str(rogue), "--out", str(rig.tmp / "b.jws"), "--", "ls")
    assert result.exit_code == 1, result.output
    assert "another authority" in result.stderr
    assert not (rig.tmp / "b.jws").exists()

    # A planned update: the old approval no longer holds; a new one does, same key,
    # same verifier policy.
    rig.host.ok("pcr", "extend", "4", "--data", "new boot loader")
    assert _authorize(rig, good, rig.tmp / "c.jws") == 1
    updated = rig.tmp / "release-approval-2.json"
    _approve(rig, release_key, updated, serial=2)
    assert _authorize(rig, updated, rig.tmp / "d.jws") == 0
    accepted(trusts_release.verify((rig.tmp / "d.jws").read_bytes()))
