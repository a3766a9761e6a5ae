"""The CLI logs every decision, enrollment, revocation and re-admission in the audit log."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import Host


@pytest.fixture
def setup(fresh_host: Host, tmp_path: Path) -> tuple[Host, Path]:
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "ls")
    policy = tmp_path / "policy.yaml"
    fresh_host.ok("policy", "init", "--from-host", "--out", str(policy))
    return fresh_host, policy


def _authorize(host: Host, out: Path, *extra: str) -> Path:
    host.ok("authorize", "--subject", "ops", "--out", str(out), *extra, "--", "ls", "-l")
    return out


def test_decisions_are_logged_and_the_log_verifies(setup: tuple[Host, Path],
                                                   tmp_path: Path) -> None:
    host, policy = setup
    artifact = _authorize(host, tmp_path / "a.jws")
    accepted = json.loads(host.ok("verify", str(artifact), "--policy", str(policy),
                                  "--json").stdout)
    denied = json.loads(host.run("verify", str(artifact), "--policy", str(policy),
                                 "--json").stdout)
    assert accepted["accepted"] and denied["reasons"] == ["replayed"]
    assert accepted["audit_index"] == 0 and denied["audit_index"] == 1
    entries = [json.loads(line) for line in
               host.ok("audit", "export").stdout.splitlines() if line.strip()]
    assert [e["decision"] for e in entries] == ["accepted", "denied"]
    # Both name the artifact by its identity (the signing input's digest), as lineage does.
    signing_input = artifact.read_bytes().strip().rpartition(b".")[0]
    digest = hashlib.sha256(signing_input).hexdigest()
    assert [e["artifact"] for e in entries] == [digest, digest]
    assert entries[1]["reasons"] == ["replayed"]
    host.ok("audit", "verify")


def test_revocations_and_readmissions_are_logged(setup: tuple[Host, Path],
                                                 tmp_path: Path) -> None:
    host, policy = setup
    artifact = _authorize(host, tmp_path / "a.jws")
    jti = json.loads(host.ok("verify", str(artifact), "--policy", str(policy),
                             "--json").stdout)["jti"]
    host.ok("revoke", "--jti", jti, "--reason", "leaked in a ticket")
    ak = json.loads((host.home / "identity.json").read_text())["ak"]["name"]
    host.ok("readmit", "--ak", ak, "--reason", "planned firmware update")
    kinds = [(e["kind"], e["decision"]) for e in
             (json.loads(line) for line in host.ok("audit", "export").stdout.splitlines())]
    assert kinds[-2:] == [("revocation", "revoked"), ("revocation", "readmitted")]


def test_readmit_lifts_a_tpm_reset_denial(setup: tuple[Host, Path], tmp_path: Path) -> None:
    host, policy = setup
    strict = tmp_path / "strict.yaml"
    strict.write_text(policy.read_text().replace("deny_reset: false", "deny_reset: true"))
    host.ok("verify", str(_authorize(host, tmp_path / "a.jws")), "--policy", str(strict))
    host.sim.stop()
    host.sim.start()
    host.ok("measure", "command", "--", "ls")  # the new boot's log
    after = _authorize(host, tmp_path / "b.jws")
    refused = host.run("verify", str(after), "--policy", str(strict), "--json")
    assert json.loads(refused.stdout)["reasons"] == ["tpm_reset"]
    ak = json.loads((host.home / "identity.json").read_text())["ak"]["name"]
    host.ok("readmit", "--ak", ak, "--reason", "rebooted for a kernel update")
    host.ok("verify", str(after), "--policy", str(strict))


def test_the_policy_claim_names_the_policy(setup: tuple[Host, Path], tmp_path: Path) -> None:
    host, policy = setup
    artifact = _authorize(host, tmp_path / "a.jws", "--policy", str(policy))
    other = tmp_path / "other.yaml"
    other.write_text(policy.read_text().replace('id: "local"', 'id: "elsewhere"'))
    result = host.run("verify", str(artifact), "--policy", str(other), "--json")
    assert "policy_mismatch" in json.loads(result.stdout)["reasons"]
    host.ok("verify", str(artifact), "--policy", str(policy))


def test_an_argument_that_is_not_utf8_is_bad_input(setup: tuple[Host, Path],
                                                   tmp_path: Path) -> None:
    host, _ = setup
    result = host.run("authorize", "--subject", "ops", "--out", str(tmp_path / "a.jws"),
                      "--", "ls", "caf\udce9")
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


def test_a_denial_with_overlong_artifact_text_is_still_logged(setup: tuple[Host, Path],
                                                              tmp_path: Path) -> None:
    """The subject, jti and host of a denial are the artifact's words: one longer than an
    entry field holds must not keep the denial out of the log (a prober with a 2,000
    character subject left no trace). The entry names it by its digest instead."""
    host, policy = setup
    subject = "s" * 2000
    out = tmp_path / "long.jws"
    host.ok("authorize", "--subject", subject, "--out", str(out), "--", "ls", "-l")
    first, again = (json.loads(host.run("verify", str(out), "--policy", str(policy),
                                        "--json").stdout) for _ in range(2))
    assert first["accepted"] and first["audit_index"] == 0, first
    assert again["reasons"] == ["replayed"] and again["audit_index"] == 1, again
    entries = [json.loads(line) for line in host.ok("audit", "export").stdout.splitlines()
               if line.strip()]
    named = "sha256:" + hashlib.sha256(subject.encode()).hexdigest()
    assert [(e["decision"], e["subject"]) for e in entries] == [("accepted", named),
                                                                ("denied", named)]
    host.ok("audit", "verify")  # the store's accepted artifact maps to its entry
