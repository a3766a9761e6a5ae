"""attest run: the command runs only on acceptance, as itself (exec), with its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Host
from tests.run.conftest import attest_cli as _attest


def test_accepted_command_runs_with_its_exit_code(ready: tuple[Host, Path],
                                                  tmp_path: Path) -> None:
    host, policy = ready
    marker = tmp_path / "ran"
    done = _attest(host, "run", "--policy", str(policy), "--", "sh", "-c",
                   f"echo $$ > {marker}; exit 7")
    assert done.returncode == 7, done.stderr
    assert marker.is_file()
    assert "accepted" in done.stderr


def test_the_command_replaces_attest(ready: tuple[Host, Path], tmp_path: Path) -> None:
    """exec, not a child: the command's pid is attest's pid."""
    host, policy = ready
    code = ("import os, subprocess, sys\n"
            f"p = subprocess.Popen([sys.executable, '-m', 'attest.cli.main', 'run', '--policy', "
            f"{str(policy)!r}, '--', 'sh', '-c', 'echo $$'], stdout=subprocess.PIPE)\n"
            "out, _ = p.communicate()\n"
            "print(p.pid, out.decode().strip())\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **host.env},
                          capture_output=True, text=True, timeout=120, check=True)
    parent_view, own_view = done.stdout.split()
    assert parent_view == own_view


def test_denied_command_never_runs(ready: tuple[Host, Path], tmp_path: Path) -> None:
    host, policy = ready
    host.ok("measure", "data", "--name", "unexpected", "--value", "x")
    marker = tmp_path / "must-not-exist"
    done = _attest(host, "run", "--policy", str(policy), "--", "sh", "-c", f"touch {marker}")
    assert done.returncode == 1
    assert "reference_value_mismatch" in done.stderr
    assert not marker.exists()


def test_unreachable_verifier_never_runs_it(ready: tuple[Host, Path], tmp_path: Path) -> None:
    from attest.ear import keys as result_keys

    host, _ = ready
    marker = tmp_path / "must-not-exist"
    pem = tmp_path / "verifier.pem"
    pem.write_text(result_keys.public_pem(
        result_keys.load_or_create(tmp_path / "verifier").public_key()))
    done = _attest(host, "run", "--verifier", "http://127.0.0.1:9", "--verifier-key",
                   str(pem), "--", "sh", "-c", f"touch {marker}")
    assert done.returncode == 3
    assert "unreachable" in done.stderr
    assert not marker.exists()


def test_policy_or_verifier_is_required(ready: tuple[Host, Path]) -> None:
    host, _ = ready
    assert host.run("run", "--", "true").exit_code == 2


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "https://",
                                 "https://exa mple.com/", "http://127.0.0.1:1/\x1b",
                                 "http://127.0.0.1:1/\u00e9"])
def test_a_verifier_url_that_names_no_server_is_usage(ready: tuple[Host, Path],
                                                      url: str) -> None:
    # Refused before anything is measured or sent: exit 2 with the URL, not an internal
    # error (ValueError, InvalidURL) nor "unreachable" (exit 3) for a URL urllib cannot use.
    host, _ = ready
    result = host.run("run", "--verifier", url, "--", "true")
    assert result.exit_code == 2, result.output
    assert "--verifier" in result.stderr


def test_a_plain_http_answer_from_the_network_never_runs_it(ready: tuple[Host, Path],
                                                            tmp_path: Path) -> None:
    """Nothing authenticates a verifier's answer over plain http: whoever is on the path
    (here a proxy standing for one) answers {"accepted": true} and the command ran, on a
    host whose state no verifier accepted. Plain http is for a verifier on this machine
    only; elsewhere https, whose server certificate is checked."""
    import json

    from tests.server.serving import Quiet, answering

    class Liar(Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"nonce": "AAAA"} if self.path.endswith("challenges")
                              else {"accepted": True, "jti": "x", "host": "h"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    host, _ = ready
    marker = tmp_path / "must-not-exist"
    with answering(Liar) as proxy:
        env = {**os.environ, **host.env, "http_proxy": proxy, "no_proxy": ""}
        done = subprocess.run(
            [sys.executable, "-m", "attest.cli.main", "run", "--verifier",
             "http://verifier.example:8080", "--", "sh", "-c", f"touch {marker}"],
            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert not marker.exists(), done.stderr
    assert done.returncode == 2, done.stderr
    assert "https" in done.stderr
