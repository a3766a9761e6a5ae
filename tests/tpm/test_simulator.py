"""The swtpm harness: start, stop, status, stale state, lockout after unclean stops."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


# Interrupting the first `attest swtpm start` (issue 11, item 3c): a real signal at a real
# point of provisioning, found by polling for the process that point runs.

def _processes_of(state: Path) -> list[int]:
    """swtpm and swtpm_setup processes whose command line names the state folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        name = os.path.basename(cmdline.split(b"\0")[0])
        if name in (b"swtpm", b"swtpm_setup") and str(state).encode() + b"/" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for(state: Path, marker: bytes, deadline_s: float = 30.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for pid in _processes_of(state):
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                continue
        time.sleep(0.002)
    return False


def _gone(state: Path, deadline_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + deadline_s
    while (left := _processes_of(state)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


@pytest.mark.parametrize(("marker", "sig"), [
    (b"swtpm_setup", signal.SIGINT),            # while swtpm_setup runs
    (b"backend-uri=dir://", signal.SIGINT),     # while the swtpm swtpm_setup runs does
    (b"backend-uri=dir://", signal.SIGTERM),
], ids=["setup-sigint", "setup-swtpm-sigint", "setup-swtpm-sigterm"])
def test_an_interrupted_first_start_leaves_no_process_and_no_half_state(
        tmp_path: Path, marker: bytes, sig: signal.Signals) -> None:
    state = (tmp_path / "sim").resolve()
    child = subprocess.Popen([sys.executable, "-m", "attest.cli.main", "swtpm", "start",
                              "--state", str(state)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(state, marker), "provisioning never reached the point"
        child.send_signal(sig)
        _, stderr = child.communicate(timeout=60)
        assert child.returncode == 130, stderr
        assert "internal error" not in stderr and "Traceback" not in stderr
        assert _gone(state) == []
        sim = Simulator(state)
        assert not sim.provisioned
        status = _attest("swtpm", "status", "--state", str(state))
        assert status.returncode == 1
        assert "not provisioned" in status.stdout, status.stdout
        again = _attest("swtpm", "start", "--state", str(state))
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"swtpm:path={state}/swtpm.sock\n"
        assert "running" in _attest("swtpm", "status", "--state", str(state)).stdout
        with open_tpm(again.stdout.strip()) as tpm:
            assert len(tpm.esapi.get_random(4)) == 4
        assert sim.root_ca_cert.is_file() and not sim.staging_dir.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        Simulator(state).stop()
        _kill_all_of(state)


def _kill_all_of(state: Path) -> None:
    """End what the code under test failed to end (an orphaned swtpm_setup may start
    another swtpm meanwhile: sweep until none is left)."""
    for _ in range(20):
        left = _processes_of(state)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def test_status_names_a_half_provisioned_state_and_start_redoes_it(tmp_path: Path) -> None:
    """What an attest killed outright (SIGKILL) mid-provisioning leaves: a staging folder
    with a partial TPM state. status says so; start provisions from scratch."""
    sim = Simulator(tmp_path / "sim")
    (sim.staging_dir / "tpm").mkdir(parents=True)
    (sim.staging_dir / "tpm" / "tpm2-00.permall").write_bytes(b"partial")
    status = _attest("swtpm", "status", "--state", str(sim.state_dir))
    assert status.returncode == 1 and "was interrupted" in status.stdout
    try:
        started = _attest("swtpm", "start", "--state", str(sim.state_dir))
        assert started.returncode == 0, started.stderr
        assert "provisioning it again" in started.stderr
        assert sim.provisioned and not sim.staging_dir.exists()
    finally:
        sim.stop()
