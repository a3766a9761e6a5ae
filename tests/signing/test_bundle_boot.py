"""A bundle carrying the boot log, for a policy that appraises boot PCRs: the same boot
appraisal as artifacts (tests/verify/test_log_sources.py's firmware, on a real swtpm)."""

from __future__ import annotations

import base64
import json
import time

from attest.verify.signature import verify_bundle
from tests.verify.rig import Rig
from tests.verify.test_log_sources import GRUB, SHIM, _apps, _with_boot, booted

__all__ = ["booted"]


def _sign(rig: Rig, *args: str) -> bytes:
    payload = rig.tmp / "payload"
    payload.write_bytes(b"built on a measured boot")
    out = rig.tmp / "bundle.json"
    rig.host.ok("sign", *args, str(payload), "--out", str(out))
    return out.read_bytes()


def test_a_bundle_with_the_boot_log_verifies_under_a_boot_policy(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM, GRUB))
    raw = _sign(booted, "--boot-log")
    decision = verify_bundle(raw, policy, int(time.time()))
    assert decision.accepted, decision.to_json()
    # Without it, the boot PCRs go unexplained.
    bare = verify_bundle(_sign(booted), policy, int(time.time()))
    assert "eventlog_mismatch" in bare.reasons


def test_a_boot_log_not_allowed_by_the_policy_is_denied(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM))  # GRUB is not allowed
    decision = verify_bundle(_sign(booted, "--boot-log"), policy, int(time.time()))
    assert decision.reasons == ("reference_value_mismatch",)


def test_a_boot_log_swapped_after_signing_is_denied(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM, GRUB))
    data = json.loads(_sign(booted, "--boot-log"))
    log = base64.b64decode(data["boot_log"])
    data["boot_log"] = base64.b64encode(log + b"\0").decode()
    decision = verify_bundle(json.dumps(data).encode(), policy, int(time.time()))
    assert not decision.accepted
    assert "binding_mismatch" in decision.reasons
