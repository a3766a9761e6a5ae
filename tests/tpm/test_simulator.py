"""The swtpm harness: start, stop, status, stale state, lockout after unclean stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from attest.cli.main import cli
from attest.simulator import Simulator
from attest.tpm.device import open_tpm
from tests.conftest import Host


def _attest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as a shell would run it."""
    return subprocess.run([sys.executable, "-m", "attest.cli.main", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_start_provisions_and_prints_only_the_tcti(provisioned_template: Path,
                                                    tmp_path: Path) -> None:
    state = tmp_path / "new"
    home = tmp_path / "userhome"
    home.mkdir()
    result = _attest("swtpm", "start", "--state", str(state), env={"HOME": str(home)})
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"swtpm:path={state.resolve()}/swtpm.sock\n"
        sim = Simulator(state)
        assert sim.status().running
        assert sim.root_ca_cert.is_file() and sim.intermediate_ca_cert.is_file()
        # Nothing outside the state folder: the user's config dir stays untouched.
        assert not (home / ".config").exists()
        with open_tpm(result.stdout.strip()) as tpm:
            assert len(tpm.esapi.get_random(8)) == 8
    finally:
        Simulator(state).stop()


def test_start_twice_prints_the_same_tcti(fresh_swtpm: Simulator) -> None:
    first = CliRunner().invoke(cli, ["swtpm", "start", "--state", str(fresh_swtpm.state_dir)])
    pid = fresh_swtpm.status().pid
    second = CliRunner().invoke(cli, ["swtpm", "start", "--state", str(fresh_swtpm.state_dir)])
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout == fresh_swtpm.tcti + "\n"
    assert "already running" in second.stderr
    assert fresh_swtpm.status().pid == pid


def test_status_and_stop(fresh_swtpm: Simulator) -> None:
    state = str(fresh_swtpm.state_dir)
    running = CliRunner().invoke(cli, ["swtpm", "status", "--state", state])
    assert running.exit_code == 0 and "running" in running.stdout
    stopped = CliRunner().invoke(cli, ["swtpm", "stop", "--state", state])
    assert stopped.exit_code == 0 and "stopped" in stopped.stderr
    after = CliRunner().invoke(cli, ["swtpm", "status", "--state", state, "--json"])
    assert after.exit_code == 1
    assert '"running": false' in after.stdout
    assert not fresh_swtpm.socket_path.exists() and not fresh_swtpm.pid_file.exists()


def test_stale_pid_and_socket_from_a_crash_are_cleaned_up(fresh_swtpm: Simulator) -> None:
    fresh_swtpm.kill()
    # What a crash leaves: a pid file naming a dead (here: recycled, not swtpm) pid,
    # and socket files nobody listens on.
    fresh_swtpm.pid_file.write_text(f"{os.getpid()}\n")
    fresh_swtpm.socket_path.touch()
    fresh_swtpm.ctrl_path.touch()
    assert not fresh_swtpm.status().running
    tcti, started = fresh_swtpm.start()
    assert started and tcti == fresh_swtpm.tcti
    with open_tpm(tcti) as tpm:
        assert len(tpm.esapi.get_random(4)) == 4


def test_five_unclean_stops_do_not_lock_the_tpm(fresh_host: Host, tmp_path: Path) -> None:
    """swtpm's default DA policy (3 tries) would lock out after three of these."""
    data = tmp_path / "data"
    data.write_bytes(b"payload")
    fresh_host.ok("key", "create", "--name", "k")
    for _ in range(5):
        # Use a DA-protected object (the key's authValue), then die without Shutdown.
        fresh_host.ok("key", "sign", "--name", "k", "--in", str(data),
                      "--out", str(tmp_path / "sig"))
        fresh_host.sim.kill()
        fresh_host.sim.start()
    fresh_host.ok("key", "sign", "--name", "k", "--in", str(data), "--out", str(tmp_path / "sig"))


def test_state_path_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    result = CliRunner().invoke(cli, ["swtpm", "start", "--state", str(deep)])
    assert result.exit_code == 3
    assert "too long" in result.stderr
    # Refused first: no "provisioning ..." line announcing what will not happen, no folder.
    assert result.stderr.startswith("error: state folder path too long"), result.stderr
    assert not deep.exists()


def test_unreachable_tpm_exits_3_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["pcr", "read"], env={
        "ATTEST_TCTI": f"swtpm:path={tmp_path}/nothing.sock", "ATTEST_HOME": str(tmp_path)})
    assert result.exit_code == 3
    assert "cannot reach a TPM" in result.stderr
    assert "attest swtpm start" in result.stderr


def _snapshot(folder: Path) -> dict[str, float]:
    if not folder.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")} | {
        str(folder): folder.stat().st_mtime}


def test_provisioning_writes_nothing_to_system_paths(tmp_path: Path) -> None:
    watched = [Path("/var/lib/swtpm-localca"), Path("/etc/swtpm-localca.conf"),
               Path("/etc/swtpm_setup.conf"), Path.home() / ".config" / "swtpm_setup.conf",
               Path.home() / ".config" / "swtpm-localca.conf"]
    before = {str(p): _snapshot(p) for p in watched}
    sim = Simulator(tmp_path / "sysclean")
    assert sim.provision()
    assert not sim.provision()  # second call: already provisioned
    assert {str(p): _snapshot(p) for p in watched} == before
    assert (sim.ca_dir / "signkey.pem").is_file()
