"""`attest eventlog check` on a host sharing PCR 15 with systemd (real swtpm): --log adds
to the default logs and never replays a record twice, --only-logs replays only the
given ones, and copying systemd's records is reported as what it is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import Host
from tests.runtime.systemd_writer import systemd_measure
from tests.runtime.test_systemd_share import shared

__all__ = ["shared"]  # the fixture: a host whose PCR 15 systemd shares




def _check(host: Host, *args: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(host.ok("eventlog", "check", "--json", *args).stdout)
    return out


def test_a_plain_check_copies_systemds_records_and_says_so(shared: tuple[Host, Path]) -> None:
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    out = host.ok("eventlog", "check").stdout
    assert "copied 1 record systemd extended into PCR 15 since attest last read" in out
    assert "repaired" not in out  # a copy is not a repair
    assert "ok: the logs explain PCRs sha256:15" in out
    # Nothing new since: nothing copied, nothing said.
    assert _check(host)["copied"] == []


def test_log_adds_to_the_defaults_and_systemds_log_replays_once(
        shared: tuple[Host, Path]) -> None:
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    systemd_measure(log, host.sim.tcti, 11, "enter-initrd", "phase")  # not attest's PCR
    host.ok("measure", "data", "--name", "n", "--value", "1")
    out = _check(host, "--log", str(log))
    # The runtime log is still replayed (attest's record explains PCR 15 with systemd's
    # copy), and systemd's log adds PCR 11 without its PCR 15 record a second time.
    assert out["logs"] == [str(host.home / "runtime.cel"), str(log)]
    assert out["verified"] == ["sha256:11", "sha256:15"]


def test_a_default_log_given_again_under_another_name_replays_once(
        shared: tuple[Host, Path]) -> None:
    host, _log = shared
    host.ok("measure", "data", "--name", "n", "--value", "1")
    runtime = host.home / "runtime.cel"
    alias = runtime.parent / "alias.cel"
    alias.symlink_to(runtime)
    out = _check(host, "--log", str(runtime), "--log", str(alias))
    assert out["logs"] == [str(runtime)] and out["verified"] == ["sha256:15"]


def test_a_copy_of_systemds_log_is_not_the_shared_one_and_replays_twice(
        shared: tuple[Host, Path], tmp_path: Path) -> None:
    # Only the shared file itself is known to be in attest's log: a copy elsewhere is
    # replayed in full, its PCR 15 record a second time, and the check fails (closed).
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    copy = tmp_path / "copy.log"
    shutil.copyfile(log, copy)
    result = host.run("eventlog", "check", "--log", str(copy))
    assert result.exit_code == 1, result.output
    assert "eventlog_mismatch" in result.stderr and "PCR 15" in result.stderr


def test_only_logs_replays_only_the_given_logs(shared: tuple[Host, Path]) -> None:
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    host.ok("measure", "data", "--name", "n", "--value", "1")
    # systemd's log alone lacks attest's record: PCR 15 is not explained by it.
    assert host.run("eventlog", "check", "--only-logs", "--log", str(log)).exit_code == 1
    runtime = str(host.home / "runtime.cel")
    out = _check(host, "--only-logs", "--log", runtime)
    assert out["logs"] == [runtime] and out["copied"] == []
    assert host.run("eventlog", "check", "--only-logs").exit_code == 2
    assert host.run("eventlog", "check", "--only-logs", "--repair",
                    "--log", runtime).exit_code == 2


def test_only_logs_copies_nothing_from_systemd(shared: tuple[Host, Path]) -> None:
    host, log = shared
    host.ok("measure", "data", "--name", "n", "--value", "1")
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    runtime = host.home / "runtime.cel"
    before = runtime.read_bytes()
    # The runtime log alone, without systemd's new record: unexplained, and untouched.
    assert host.run("eventlog", "check", "--only-logs", "--log", str(runtime)).exit_code == 1
    assert runtime.read_bytes() == before


def test_measure_reports_the_copy_as_a_copy(shared: tuple[Host, Path]) -> None:
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    systemd_measure(log, host.sim.tcti, 15, "file-system:/:ext4:root", "filesystem")
    result = host.ok("measure", "data", "--name", "n", "--value", "1")
    assert "copied 2 records systemd extended into PCR 15" in result.stderr
    assert "repaired" not in result.stderr
