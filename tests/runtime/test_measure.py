"""Runtime measurements against a real swtpm: the log and the runtime PCR stay in step."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attest.artifact import jws
from attest.eventlog.cel import attest_record, encode_record, parse_cel
from attest.host.runtime.log import RuntimeLog
from attest.host.runtime.subjects import data_content
from attest.simulator import Simulator
from tests.conftest import Host


def _pcr15(host: Host) -> str:
    return str(json.loads(host.ok("pcr", "read", "15", "--json").stdout)["sha256"]["15"])


def _replayed15(host: Host) -> str:
    out = host.ok("eventlog", "replay", str(host.home / "runtime.cel"), "--json")
    return str(json.loads(out.stdout)["sha256"]["15"])


def _log(host: Host) -> RuntimeLog:
    return RuntimeLog(host.home)


@pytest.fixture
def measured(fresh_host: Host, tmp_path: Path) -> Host:
    target = tmp_path / "app.conf"
    target.write_text("mode = strict\n")
    fresh_host.ok("measure", "file", str(target))
    fresh_host.ok("measure", "command", "--", "ls", "-l", "/")
    fresh_host.ok("measure", "data", "--name", "release", "--value", "1.2.3")
    return fresh_host


def test_measure_replay_equals_the_pcr(measured: Host) -> None:
    assert _replayed15(measured) == _pcr15(measured)
    out = measured.ok("eventlog", "check", "--json")
    assert json.loads(out.stdout)["verified"] == ["sha256:15"]


def test_records_say_what_was_measured(measured: Host, tmp_path: Path) -> None:
    records = parse_cel((measured.home / "runtime.cel").read_bytes()).records
    assert [r.recnum for r in records] == [0, 1, 2]
    file_record, command_record, data_record = (r.content for r in records)
    assert file_record["type"] == "file" and file_record["path"] == str(tmp_path / "app.conf")
    assert command_record["type"] == "command" and "argv" not in command_record
    assert command_record["argv_digest"] == {
        "sha256": hashlib.sha256(b'["ls","-l","/"]').hexdigest()}
    assert command_record["name"].endswith("/ls")
    assert data_record == {"type": "data", "name": "release",
                           "digest": {"sha256": hashlib.sha256(b"1.2.3").hexdigest()}}


def test_secrets_stay_out_of_the_log_and_every_later_artifact(fresh_host: Host) -> None:
    """A token on a command line or in `measure data` never reaches the log (and so never
    rides in the next artifact, for another command, to every verifier)."""
    token = "s3cr3t-" + "q" * 24
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "ls", f"--token={token}")
    fresh_host.ok("measure", "data", "--name", "db.password", "--value", token)
    fresh_host.ok("authorize", "--subject", "s", "--out", str(fresh_host.home.parent / "a.jws"),
                  "--", "ls")
    artifact = (fresh_host.home.parent / "a.jws").read_bytes()
    log = (fresh_host.home / "runtime.cel").read_bytes()
    assert token.encode() not in log
    runtime_log = jws.parse(artifact.strip()).claims.evidence.runtime_log
    assert token.encode() not in runtime_log
    assert len(parse_cel(runtime_log).records) == 2


def test_values_are_logged_only_when_asked(fresh_host: Host) -> None:
    fresh_host.ok("measure", "command", "--record-argv", "--", "ls", "-a")
    fresh_host.ok("measure", "data", "--record-value", "--name", "release", "--value", "1.2.3")
    command, data = (r.content for r in _log(fresh_host).read().records)
    assert command["argv"] == ["ls", "-a"]
    assert data["value"] == "1.2.3"
    assert fresh_host.ok("eventlog", "check").exit_code == 0


def test_log_and_home_are_private_even_when_they_were_not(fresh_host: Host) -> None:
    """An existing 0755 home and 0644 log (an older attest) are tightened on next use."""
    fresh_host.home.mkdir(parents=True, exist_ok=True)
    fresh_host.home.chmod(0o755)
    log = fresh_host.home / "runtime.cel"
    log.touch(mode=0o644)
    log.chmod(0o644)
    fresh_host.ok("measure", "data", "--name", "n", "--value", "v")
    assert stat.S_IMODE(fresh_host.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    fresh_host.ok("key", "create", "--name", "k2")
    for path in (fresh_host.home / "keys", fresh_host.home / "keys" / "k2"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh_host.home / "keys" / "k2" / "key.json").stat().st_mode) == 0o600


def test_a_shared_folder_is_never_taken_as_a_home(fresh_swtpm: Simulator,
                                                  tmp_path: Path) -> None:
    """A sticky, world-writable folder (like /tmp) is refused, not chmod-ed, even as root."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = Host(fresh_swtpm, shared).run("measure", "data", "--name", "n", "--value", "v")
    assert result.exit_code == 2
    assert "shared folder" in result.output
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_an_open_folder_attest_did_not_make_is_refused_not_narrowed(
        fresh_swtpm: Simulator, tmp_path: Path) -> None:
    """ATTEST_HOME set to someone's 0755 folder (say /var/lib, as root) is left alone."""
    folder = tmp_path / "var-lib"
    (folder / "dpkg").mkdir(parents=True)
    folder.chmod(0o755)
    result = Host(fresh_swtpm, folder).run("measure", "data", "--name", "n", "--value", "v")
    assert result.exit_code == 2 and "not one attest made" in result.output
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def _rewrite(host: Host, edit: object) -> None:
    path = host.home / "runtime.cel"
    lines = path.read_bytes().split(b"\n")[:-1]
    lines = edit(lines)  # type: ignore[operator]
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize(("tamper", "says"), [
    (lambda lines: [lines[0].replace(b"app.conf", b"app.conX"), *lines[1:]], "altered"),
    (lambda lines: [lines[0], lines[2]], "recnum"),
    (lambda lines: [lines[1], lines[0], lines[2]], "recnum"),
    (lambda lines: lines[:2], "PCR 15"),
])
def test_tampered_log_is_detected_and_named(measured: Host, tamper: object, says: str) -> None:
    _rewrite(measured, tamper)
    result = measured.run("eventlog", "check")
    assert result.exit_code in (1, 2), result.output
    assert says in result.stderr
    # measuring on top of a history it cannot explain is refused too
    refused = measured.run("measure", "data", "--name", "n", "--value", "v")
    assert refused.exit_code != 0


def test_deleted_and_renumbered_record_is_still_caught(measured: Host) -> None:
    """Deleting a record and renumbering the rest keeps the log well-formed; replay catches it."""
    def drop_middle(lines: list[bytes]) -> list[bytes]:
        last = json.loads(lines[2][1:])
        last["recnum"] = 1
        return [lines[0], b"\x1e" + json.dumps(last).encode()]
    _rewrite(measured, drop_middle)
    result = measured.run("eventlog", "check")
    assert result.exit_code == 1
    assert "eventlog_mismatch" in result.stderr and "PCR 15" in result.stderr


def test_a_record_written_but_never_extended_is_named_and_repaired(measured: Host) -> None:
    log = _log(measured)
    record = attest_record(3, 15, data_content("crash", "between", ["sha256"]), ["sha256"])
    log.append(record)  # what a crash between the append and the extend leaves
    found = measured.run("eventlog", "check")
    assert found.exit_code == 1
    assert "never extended" in found.stderr and "record 3" in found.stderr
    repaired = measured.ok("eventlog", "check", "--repair")
    assert "extended it now" in repaired.stdout
    assert _replayed15(measured) == _pcr15(measured)


def test_an_incomplete_last_record_is_dropped_by_the_next_measure(measured: Host) -> None:
    record = attest_record(3, 15, data_content("torn", "write", ["sha256"]), ["sha256"])
    with open(measured.home / "runtime.cel", "ab") as handle:
        handle.write(encode_record(record)[:25])
    assert measured.run("eventlog", "check").exit_code == 1
    result = measured.ok("measure", "data", "--name", "next", "--value", "v")
    assert "incomplete record" in result.stderr and "dropped it" in result.stderr
    assert _replayed15(measured) == _pcr15(measured)
    assert [r.content["name"] for r in parse_cel(
        (measured.home / "runtime.cel").read_bytes()).records][-1] == "next"


def test_an_extend_outside_attest_is_refused(measured: Host) -> None:
    measured.ok("pcr", "extend", "15", "--data", "not through attest")
    result = measured.run("measure", "data", "--name", "n", "--value", "v")
    assert result.exit_code == 1
    assert "something other than attest extended the PCR" in result.stderr


def test_a_restarted_tpm_starts_a_new_log(measured: Host) -> None:
    measured.sim.stop()
    measured.sim.start()
    assert measured.run("eventlog", "check").exit_code == 1
    result = measured.ok("measure", "data", "--name", "first", "--value", "after reboot")
    assert "previous boot's log is kept" in result.stderr
    assert len(list(measured.home.glob("runtime.cel.*"))) == 1
    assert _replayed15(measured) == _pcr15(measured)


def test_resettable_pcr_needs_consent(fresh_host: Host) -> None:
    refused = fresh_host.run("measure", "data", "--name", "n", "--value", "v", "--pcr", "16")
    assert refused.exit_code == 2 and "can be reset" in refused.stderr
    fresh_host.ok("measure", "data", "--name", "n", "--value", "v", "--pcr", "16",
                  "--allow-resettable")


def test_one_log_one_pcr(measured: Host) -> None:
    result = measured.run("measure", "data", "--name", "n", "--value", "v", "--pcr", "14")
    assert result.exit_code == 2 and "extends PCR 15, not PCR 14" in result.stderr


@pytest.mark.parametrize("args", [
    ["measure", "file", "/no/such/file"],
    ["measure", "file", "/"],
    ["measure", "command", "--", "no-such-command-xyz"],
    ["measure", "data", "--name", "n"],
])
def test_bad_input_exits_2(fresh_host: Host, args: list[str]) -> None:
    assert fresh_host.run(*args).exit_code == 2


def _measure_loop(host: Host, tag: str, count: int) -> subprocess.Popen[bytes]:
    code = ("import sys\nfrom attest.cli.main import main\n"
            f"for i in range({count}):\n"
            "    sys.argv = ['attest', 'measure', 'data', '--name', "
            f"'{tag}-' + str(i), '--value', str(i)]\n"
            "    try:\n        main()\n    except SystemExit as e:\n"
            "        if e.code: raise\n")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **host.env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_two_concurrent_measure_loops_leave_a_log_that_replays(fresh_host: Host) -> None:
    loops = [_measure_loop(fresh_host, tag, 15) for tag in ("a", "b")]
    for loop in loops:
        _, err = loop.communicate(timeout=120)
        assert loop.returncode == 0, err.decode()
    records = parse_cel((fresh_host.home / "runtime.cel").read_bytes()).records
    assert [r.recnum for r in records] == list(range(30))
    assert _replayed15(fresh_host) == _pcr15(fresh_host)
    fresh_host.ok("eventlog", "check")


def test_killed_measure_loops_never_leave_an_unnoticed_disagreement(fresh_host: Host) -> None:
    log = fresh_host.home / "runtime.cel"
    for round_number in range(5):
        loop = _measure_loop(fresh_host, f"r{round_number}", 200)
        before = log.stat().st_size if log.exists() else 0
        deadline = time.monotonic() + 30
        while (log.stat().st_size if log.exists() else 0) <= before:
            assert time.monotonic() < deadline, "the measure loop made no progress"
            time.sleep(0.005)
        time.sleep(0.003 * round_number)  # kill at different points of the cycle
        loop.send_signal(signal.SIGKILL)
        loop.wait(timeout=30)
        # Either consistent, or a crash trace that check names and --repair finishes.
        check = fresh_host.run("eventlog", "check")
        if check.exit_code != 0:
            assert "never extended" in check.stderr or "incomplete record" in check.stderr, (
                check.stderr)
        fresh_host.ok("eventlog", "check", "--repair")
        assert _replayed15(fresh_host) == _pcr15(fresh_host)


def test_a_runtime_pcr_the_boot_log_extends_is_refused(
        fresh_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Firmware (a measured UKI, say) extended PCR 15 and logged it: a verifier explains
    # the runtime PCR by the runtime log alone, so measuring there would only be denied.
    from attest.tpm.device import open_tpm
    from attest.tpm.pcr import extend_data
    from tests.eventlog.logbuilder import SHA256, agile_log

    data = b"systemd-pcrmachine"
    with open_tpm(fresh_host.sim.tcti) as tpm:
        extend_data(tpm, 15, data)
    log = tmp_path / "binary_bios_measurements"
    log.write_bytes(agile_log([(15, 0xD, data)], algorithms=(SHA256,)))
    monkeypatch.setenv("ATTEST_BOOT_LOG", str(log))
    result = fresh_host.run("measure", "data", "--name", "n", "--value", "v")
    assert result.exit_code == 2, result.output
    assert "the boot log extends PCR 15" in result.output
    assert not _log(fresh_host).path.exists() or not _log(fresh_host).read().records


# A log silent about a PCR that holds measurements never explains it (issue 11, item 3a).

def _says_runtime_pcr_is_unexplained(result: object, pcr15: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "eventlog_mismatch" in stderr and "PCR 15" in stderr
    assert pcr15 in stderr and "0" * 64 in stderr  # both values: the TPM's and the reset one


def test_an_emptied_runtime_log_is_a_mismatch(measured: Host) -> None:
    pcr15 = _pcr15(measured)
    (measured.home / "runtime.cel").write_bytes(b"")
    _says_runtime_pcr_is_unexplained(measured.run("eventlog", "check"), pcr15)


def test_a_deleted_runtime_log_is_a_mismatch(measured: Host) -> None:
    pcr15 = _pcr15(measured)
    (measured.home / "runtime.cel").unlink()
    _says_runtime_pcr_is_unexplained(measured.run("eventlog", "check"), pcr15)


def test_a_truncated_runtime_log_is_a_mismatch(measured: Host) -> None:
    _rewrite(measured, lambda lines: lines[:1])
    result = measured.run("eventlog", "check")
    assert result.exit_code == 1 and "eventlog_mismatch" in result.stderr
    assert "PCR 15" in result.stderr


def test_an_empty_log_file_named_with_only_logs_is_a_mismatch(measured: Host,
                                                            tmp_path: Path) -> None:
    pcr15 = _pcr15(measured)
    empty = tmp_path / "empty.cel"
    empty.write_bytes(b"")
    _says_runtime_pcr_is_unexplained(
        measured.run("eventlog", "check", "--only-logs", "--log", str(empty)), pcr15)


def test_nothing_measured_yet_is_ok(fresh_host: Host) -> None:
    """Honest use: a fresh host with no log has its runtime PCR at the reset value."""
    out = fresh_host.ok("eventlog", "check", "--json")
    assert "sha256:15" in json.loads(out.stdout)["verified"]


def test_input_that_cannot_be_a_record_is_usage_and_measures_nothing(
        fresh_host: Host, tmp_path: Path) -> None:
    # argv bytes that are not UTF-8 (a name, a value, a file's path) or no name: the JSON
    # log cannot keep them; the caller is told (exit 2), not an internal error or a
    # "malformed event log" refusal (exit 1), and nothing is extended.
    odd = os.fsdecode(b"n\xff")
    (tmp_path / odd).write_bytes(b"x")
    before = _pcr15(fresh_host)
    for argv in (["data", "--name", odd, "--value", "v"], ["data", "--name", "n", "--value", odd],
                 ["data", "--name", "", "--value", "v"], ["file", str(tmp_path / odd)]):
        result = fresh_host.run("measure", *argv)
        assert result.exit_code == 2, (argv, result.output)
    assert _pcr15(fresh_host) == before


def test_pcr_extend_data_takes_the_arguments_own_bytes(fresh_host: Host) -> None:
    extended = json.loads(fresh_host.ok("pcr", "extend", "14", "--data",
                                        os.fsdecode(b"n\xff"), "--json").stdout)
    assert extended["ok"] is True
    # What is extended is the digest of the bytes given, as the shell passed them.
    assert extended["extended"]["sha256"] == hashlib.sha256(b"n\xff").hexdigest()
