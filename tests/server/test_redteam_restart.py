"""Honest use under the service must not be denied (issue 13's red team): a host that
enrolled over HTTP, whose TPM then restarts (a reboot: PCRs reset, a new runtime log),
enrolls again and runs again through `attest serve`, on a real swtpm."""

from __future__ import annotations

import json
from pathlib import Path

from attest.ear import keys as result_keys
from tests.conftest import Host
from tests.run.conftest import attest_cli
from tests.server.serving import audit_verifies, served
from tests.server.test_enroll_cli import enrolling

__all__ = ["enrolling"]


def test_after_a_tpm_restart_the_host_enrolls_and_runs_again(
        enrolling: tuple[Host, Path], tmp_path: Path) -> None:
    host, policy = enrolling
    home = tmp_path / "verifier"
    ran = tmp_path / "ran"
    with served(policy, home) as base:
        pem = tmp_path / "verifier-key.pem"
        pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
        trusted = ("--verifier", base, "--verifier-key", str(pem))
        first = attest_cli(host, "enroll", "--verifier", base, "--host", "web-1", "--json")
        assert first.returncode == 0, first.stderr
        before = attest_cli(host, "run", *trusted, "--", "sh", "-c", "true")
        assert before.returncode == 0, before.stderr
        host.sim.stop()
        host.sim.start()
        again = attest_cli(host, "enroll", "--verifier", base, "--host", "web-1", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["ak"] == json.loads(first.stdout)["ak"]
        # The restarted TPM's PCRs hold nothing of before: `sh` is measured anew, as
        # the policy (made from the host before the restart) expects it.
        after = attest_cli(host, "run", *trusted, "--", "sh", "-c", f"echo yes > {ran}")
        assert after.returncode == 0, after.stderr
        assert ran.read_text() == "yes\n"
    audit_verifies(home)
