"""`attest serve`: a real uvicorn on a loopback port, called with urllib; the command's
refusals (a non-loopback address, a port already taken, no policy) by exit code; and the
service without the TSS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from attest.policy import NonceMode
from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.server.serving import audit_verifies, call, policy_file, serve_cli, served
from tests.verify.rig import Rig
from tests.verify.test_without_tss import _BLOCKED, _BODY, _env

__all__ = ["ready"]


def test_attest_serve_answers_on_loopback(rig: Rig) -> None:
    policy = policy_file(rig, nonce=NonceMode.REQUIRED)
    home = rig.tmp / "verifier"
    with served(policy, home) as base:
        assert call(base, "/v1/health")["status"] == "ok"
        nonce = call(base, "/v1/challenges", {})["nonce"]
        artifact = rig.issue(nonce=nonce).decode()
        decision = call(base, "/v1/verify", {"artifact": artifact})
        assert decision["accepted"] is True, decision["denials"]
        again = call(base, "/v1/verify", {"artifact": artifact})
        assert again["accepted"] is False and "replayed" in again["reasons"]
    audit_verifies(home)


def test_attest_run_against_attest_serve(ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The client (`attest run --verifier`: a challenge, then the JWS as
    application/jose, then the signed result checked) and the service agree: accepted,
    CMD runs; denied, it does not; a host that trusts no verifier key runs nothing."""
    from attest.ear import keys as result_keys

    host, policy = ready
    home = tmp_path / "verifier"
    ran, never = tmp_path / "ran", tmp_path / "must-not-exist"
    with served(policy, home) as base:
        untrusted = attest_cli(host, "run", "--verifier", base, "--", "sh", "-c",
                               f"touch {never}")
        assert untrusted.returncode == 2 and "no verifier key" in untrusted.stderr
        pem = tmp_path / "verifier.pem"
        pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
        log_key = home / "audit" / "audit-log.pub"  # the receipt checked on the host too
        done = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                          "--log-key", str(log_key), "--", "sh", "-c",
                          f"echo yes > {ran}; exit 7")
        assert done.returncode == 7, done.stderr
        assert ran.read_text() == "yes\n"
        host.ok("measure", "data", "--name", "unexpected", "--value", "x")
        denied = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                            "--", "sh", "-c", f"touch {never}")
        assert denied.returncode == 1, denied.stderr
        assert "reference_value_mismatch" in denied.stderr
        assert not never.exists()
    audit_verifies(home)


def test_serve_refuses_an_address_beyond_loopback(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("")
    done = serve_cli(tmp_path, "--policy", str(policy), "--host", "0.0.0.0")  # noqa: S104
    assert done.exit_code == 2 and "loopback" in done.output


def test_serve_without_a_policy_file_is_usage(tmp_path: Path) -> None:
    done = serve_cli(tmp_path, "--policy", str(tmp_path / "absent.yaml"))
    assert done.exit_code == 2, done.output


def test_serve_on_a_taken_port_is_environment(rig: Rig, tmp_path: Path) -> None:
    policy = policy_file(rig)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = serve_cli(tmp_path, "--policy", str(policy), "--port", str(port))
    assert done.exit_code == 3, done.output
    assert f"127.0.0.1:{port}" in done.output


def test_the_service_never_imports_the_tss() -> None:
    done = subprocess.run([sys.executable, "-c", _BLOCKED + _BODY, "--modules",
                           "attest.server.app", "attest.cli.serve"],
                          capture_output=True, text=True, timeout=60,
                          env={**_env({}), "PYTHONPATH": os.pathsep.join(sys.path)},
                          check=True)
    assert done.stdout.split() == [], done.stdout


_NO_SERVER = """
import importlib.abc, sys

class NoServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fastapi", "uvicorn", "starlette"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoServer())
sys.argv = ["attest", *sys.argv[1:]]
from attest.cli.main import main
main()
"""


def test_serve_without_the_server_extra_names_it(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _NO_SERVER, "--home", str(tmp_path),
                           "serve", "--policy", str(tmp_path / "policy.yaml")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                          check=False)
    assert done.returncode == 3, done.stderr
    assert "attest[server]" in done.stderr and "Traceback" not in done.stderr
