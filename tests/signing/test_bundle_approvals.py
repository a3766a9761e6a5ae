"""Bundles signed by a key bound to an authority (PolicyAuthorize): the bundle names the
approval it signed under, and the verifier applies the artifacts' approval check
(tests/verify/test_approvals.py's authority and rig, on a real swtpm)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from attest.verify.signature import verify_bundle
from tests.verify.test_approvals import Approvals, Authority, approvals

__all__ = ["approvals"]


def _sign(approvals: Approvals, *approval_files: Path) -> bytes:
    rig = approvals.rig
    payload = rig.tmp / "payload"
    payload.write_bytes(b"signed under an approval")
    out = rig.tmp / f"bundle-{len(list(rig.tmp.glob('bundle-*')))}.json"
    options = [arg for path in approval_files for arg in ("--approval", str(path))]
    rig.host.ok("sign", "--key", "signed", *options, str(payload), "--out", str(out))
    return out.read_bytes()


def _approval_file(approvals: Approvals, serial: int) -> Path:
    path = approvals.rig.tmp / f"approval-{serial}.json"
    path.write_bytes(approvals.approve(serial).to_bytes())
    return path


def test_a_bundle_signed_under_an_approval_verifies(approvals: Approvals) -> None:
    raw = _sign(approvals, _approval_file(approvals, 1))
    decision = verify_bundle(raw, approvals.policy(), int(time.time()))
    assert decision.accepted, decision.to_json()
    assert json.loads(raw)["approval"] is not None


def test_signing_without_an_approval_is_refused(approvals: Approvals) -> None:
    rig = approvals.rig
    (rig.tmp / "p").write_bytes(b"p")
    result = rig.host.run("sign", "--key", "signed", str(rig.tmp / "p"), "--out",
                          str(rig.tmp / "b.json"))
    assert result.exit_code == 2 and "--approval" in result.output


def test_a_retired_approval_is_denied(approvals: Approvals) -> None:
    raw = _sign(approvals, _approval_file(approvals, 1))
    policy = approvals.policy(min_approval_serial=2)
    assert verify_bundle(raw, policy, int(time.time())).reasons == ("key_policy_mismatch",)


def test_an_approval_swapped_after_signing_is_denied(approvals: Approvals) -> None:
    raw = _sign(approvals, _approval_file(approvals, 1))
    newer = approvals.approve(2).to_bytes()
    data = json.loads(raw)
    data["approval"] = base64.b64encode(newer).decode()
    decision = verify_bundle(json.dumps(data).encode(), approvals.policy(), int(time.time()))
    assert decision.reasons == ("binding_mismatch",)


def test_an_approval_by_another_authority_is_denied(approvals: Approvals) -> None:
    other = Authority.make()
    raw = _sign(approvals, _approval_file(approvals, 1))
    policy = approvals.rig.policy(sealed_values={}, sealed_pcrs=range(8),
                                  authority_pem=other.public_pem)
    assert "key_policy_mismatch" in verify_bundle(raw, policy, int(time.time())).reasons
