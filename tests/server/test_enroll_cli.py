"""`attest enroll --verifier URL` against `attest serve` (a real uvicorn on loopback), the
host on its own swtpm: enrolled by credential activation, then `attest run --verifier`
accepted; a refusal exits 1 with its reason, a verifier out of reach 3."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import Host
from tests.run.conftest import attest_cli
from tests.server.serving import audit_verifies, served


@pytest.fixture
def enrolling(fresh_host: Host, tmp_path: Path) -> tuple[Host, Path]:
    """A host with a PCR-bound key and `sh` measured, and a policy that trusts the AKs
    the store enrolls, under the simulator's CA as EK roots."""
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "sh", "-c", "true")
    roots = tmp_path / "ek-roots"
    roots.mkdir()
    shutil.copy(fresh_host.sim.root_ca_cert, roots)
    shutil.copy(fresh_host.sim.intermediate_ca_cert, roots)
    policy = tmp_path / "policy.yaml"
    fresh_host.ok("policy", "init", "--from-host", "--enrollment", "store", "--ek-roots",
                  str(roots), "--out", str(policy))
    return fresh_host, policy


def test_enroll_over_http_then_run_is_accepted(enrolling: tuple[Host, Path],
                                               tmp_path: Path) -> None:
    host, policy = enrolling
    home = tmp_path / "verifier"
    ran, never = tmp_path / "ran", tmp_path / "must-not-exist"
    with served(policy, home) as base:
        # The host trusts the service's result key (an operator hands it over).
        from attest.ear import keys as result_keys

        pem = tmp_path / "verifier-key.pem"
        pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
        trusted = ("--verifier", base, "--verifier-key", str(pem))
        before = attest_cli(host, "run", *trusted, "--", "sh", "-c", f"touch {never}")
        assert before.returncode == 1 and "ak_unknown" in before.stderr, before.stderr
        done = attest_cli(host, "enroll", "--verifier", base, "--host", "web-1", "--json")
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["host"] == "web-1" and out["verifier"] == base
        assert len(out["ak"]) == 68 and len(out["ek"]) == 64  # TPM name, SHA-256 hex
        after = attest_cli(host, "run", *trusted, "--", "sh", "-c", f"echo yes > {ran}")
        assert after.returncode == 0, after.stderr
        assert ran.read_text() == "yes\n"
        # The AK speaks for web-1 only: another host id is a named refusal, exit 1.
        other = attest_cli(host, "enroll", "--verifier", base, "--host", "web-2")
        assert other.returncode == 1, other.stderr
        assert "enrollment_conflict" in other.stderr
    assert not never.exists()
    audit_verifies(home)


def test_enroll_with_a_verifier_out_of_reach_exits_3(enrolling: tuple[Host, Path]) -> None:
    host, _ = enrolling
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = attest_cli(host, "enroll", "--verifier", f"http://127.0.0.1:{port}")
    assert done.returncode == 3, done.stderr
    assert "unreachable" in done.stderr


def test_enroll_over_plain_http_to_another_machine_needs_insecure(
        enrolling: tuple[Host, Path]) -> None:
    host, _ = enrolling
    refused = attest_cli(host, "enroll", "--verifier", "http://192.0.2.1:8600")
    assert refused.returncode == 2 and "plain http" in refused.stderr, refused.stderr
    mixed = attest_cli(host, "enroll", "--verifier", "https://192.0.2.1", "--move-host")
    assert mixed.returncode == 2, mixed.stderr
