"""PCR 15 shared with systemd on a real swtpm: systemd's records, written in its exact
shape under its lock, and attest's together explain the PCR on the host and at the
verifier (docs/measurement.md, "Sharing PCR 15 with systemd")."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from attest.eventlog.cel import parse_cel
from attest.tpm.device import open_tpm
from attest.tpm.pcr import extend_data
from tests.conftest import Host
from tests.runtime.systemd_writer import (
    extend_and_log,
    record_bytes,
    systemd_lock,
    systemd_measure,
)


@pytest.fixture
def shared(fresh_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Host, Path]]:
    """A host whose runtime PCR systemd shares, through a systemd log of the test's own."""
    log = tmp_path / "run" / "log" / "systemd" / "tpm2-measure.log"
    monkeypatch.setenv("ATTEST_SYSTEMD_LOG", str(log))
    yield fresh_host, log


def _kinds(host: Host) -> list[str]:
    records = parse_cel((host.home / "runtime.cel").read_bytes()).records
    return [r.content_type + ":" + str(r.content.get("string") or r.content.get("name"))
            for r in records]


def _verify(host: Host, artifact: Path, policy: Path) -> dict[str, object]:
    result = host.run("verify", str(artifact), "--policy", str(policy), "--json")
    out: dict[str, object] = json.loads(result.stdout)
    assert result.exit_code == (0 if out["accepted"] else 1), out
    return out


def test_systemd_and_attest_records_together_are_accepted(
        shared: tuple[Host, Path], tmp_path: Path) -> None:
    host, log = shared
    tcti = host.sim.tcti
    systemd_measure(log, tcti, 15, "machine-id:4a1b6c0e2d8f4b1a9c3e5d7f9a1b3c5d", "machine-id")
    systemd_measure(log, tcti, 11, "enter-initrd", "phase")  # another PCR: not attest's
    host.ok("key", "create")
    host.ok("measure", "command", "--", "ls")
    assert _kinds(host) == ["systemd:machine-id:4a1b6c0e2d8f4b1a9c3e5d7f9a1b3c5d",
                            "attest:/usr/bin/ls"]
    assert json.loads(host.ok("eventlog", "check", "--json").stdout)["verified"] == \
        ["sha256:15"]
    systemd_measure(log, tcti, 15, "file-system:/:ext4:root", "filesystem")
    policy = tmp_path / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    assert "systemd:" in policy.read_text()
    artifact = tmp_path / "a.jws"
    host.ok("authorize", "--subject", "bot", "--out", str(artifact), "--", "ls")
    assert _kinds(host)[2] == "systemd:file-system:/:ext4:root"  # copied before issuing
    out = _verify(host, artifact, policy)
    assert out["accepted"] is True, out


def test_an_unexpected_systemd_record_is_denied(shared: tuple[Host, Path],
                                                tmp_path: Path) -> None:
    host, log = shared
    host.ok("key", "create")
    host.ok("measure", "command", "--", "ls")
    policy = tmp_path / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    # After the policy was written, systemd measures something the policy never saw.
    systemd_measure(log, host.sim.tcti, 15, "cryptsetup:swap:deadbeef", "volume-key")
    artifact = tmp_path / "a.jws"
    host.ok("authorize", "--subject", "bot", "--out", str(artifact), "--", "ls")
    out = _verify(host, artifact, policy)
    assert out["reasons"] == ["reference_value_mismatch"], out
    assert "cryptsetup:swap:deadbeef" in json.dumps(out["denials"])


def test_a_systemd_log_edited_after_copying_is_refused(shared: tuple[Host, Path]) -> None:
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    host.ok("measure", "data", "--name", "n", "--value", "1")
    # Rewritten in place: the record attest copied is no longer systemd's first.
    log.write_bytes(log.read_bytes().replace(b"machine-id:aa", b"machine-id:bb"))
    systemd_measure(log, host.sim.tcti, 15, "machine-id:cc", "machine-id")
    result = host.run("measure", "data", "--name", "n", "--value", "2")
    assert result.exit_code == 1 and "eventlog_mismatch" in result.stderr, result.output
    # This boot's systemd record went into no log of the previous boot.
    for archived in host.home.glob("runtime.cel.*"):
        assert b"boot2" not in archived.read_bytes()


def _held(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_attest_waits_for_systemd_lock_and_logs_in_extend_order(
        shared: tuple[Host, Path]) -> None:
    host, log = shared
    host.ok("measure", "data", "--name", "first", "--value", "1")
    with systemd_lock(log) as fd:
        measuring = subprocess.Popen(
            [sys.executable, "-m", "attest.cli.main", "measure", "data", "--name", "second",
             "--value", "2"], env={**os.environ, **host.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # attest takes its own lock, then waits on systemd's: once its own is taken,
            # it can neither extend nor finish while the test holds systemd's.
            while not _held(host.home / "runtime.lock"):
                assert measuring.poll() is None, measuring.communicate()[1]
            extend_and_log(fd, host.sim.tcti, 15, "machine-id:while-locked", "machine-id")
            assert measuring.poll() is None
        except BaseException:
            measuring.kill()
            measuring.wait()
            raise
    _, err = measuring.communicate(timeout=60)
    assert measuring.returncode == 0, err
    assert _kinds(host) == ["attest:first", "systemd:machine-id:while-locked", "attest:second"]
    assert json.loads(host.ok("eventlog", "check", "--json").stdout)["verified"] == \
        ["sha256:15"]


def test_after_a_reboot_this_boots_systemd_records_open_the_new_log(
        shared: tuple[Host, Path]) -> None:
    host, log = shared
    systemd_measure(log, host.sim.tcti, 15, "machine-id:boot1", "machine-id")
    host.ok("measure", "data", "--name", "n", "--value", "1")
    host.sim.stop()
    host.sim.start()
    log.unlink()  # /run is a tmpfs: systemd's log starts anew with the boot
    systemd_measure(log, host.sim.tcti, 15, "machine-id:boot2", "machine-id")
    result = host.ok("measure", "data", "--name", "n", "--value", "2")
    assert "previous boot's log is kept" in result.stderr
    assert _kinds(host) == ["systemd:machine-id:boot2", "attest:n"]
    assert json.loads(host.ok("eventlog", "check", "--json").stdout)["verified"] == \
        ["sha256:15"]


def test_after_a_reboot_an_unlogged_extend_is_still_refused(shared: tuple[Host, Path]) -> None:
    host, log = shared
    host.ok("measure", "data", "--name", "n", "--value", "1")
    host.sim.stop()
    host.sim.start()
    systemd_measure(log, host.sim.tcti, 15, "machine-id:boot2", "machine-id")
    with open_tpm(host.sim.tcti) as tpm:  # an extend nobody logged
        extend_data(tpm, 15, b"unlogged")
    result = host.run("measure", "data", "--name", "n", "--value", "2")
    assert result.exit_code == 1 and "eventlog_mismatch" in result.stderr, result.output
    # This boot's systemd record went into no log of the previous boot.
    for archived in host.home.glob("runtime.cel.*"):
        assert b"boot2" not in archived.read_bytes()


def test_without_systemd_log_its_extend_is_unexplained_and_the_hint_says_so(
        fresh_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTEST_SYSTEMD_LOG", "off")
    fresh_host.ok("measure", "data", "--name", "n", "--value", "1")
    systemd_measure(tmp_path / "tpm2-measure.log", fresh_host.sim.tcti, 15, "machine-id:x",
                    "machine-id")
    result = fresh_host.run("measure", "data", "--name", "n", "--value", "2")
    assert result.exit_code == 1 and "eventlog_mismatch" in result.stderr
    assert "ATTEST_SYSTEMD_LOG" in result.stderr


def test_concurrent_systemd_and_attest_measurements_replay_in_one_order(
        shared: tuple[Host, Path]) -> None:
    host, log = shared
    code = ("import sys\nfrom attest.cli.main import main\n"
            "for i in range(6):\n"
            "    sys.argv = ['attest', 'measure', 'data', '--name', 'a' + str(i), "
            "'--value', str(i)]\n"
            "    try:\n        main()\n    except SystemExit as e:\n"
            "        if e.code: raise\n")
    loop = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **host.env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for i in range(6):
            systemd_measure(log, host.sim.tcti, 15, f"file-system:/srv{i}", "filesystem")
    finally:
        _, err = loop.communicate(timeout=120)
    assert loop.returncode == 0, err
    host.ok("measure", "data", "--name", "last", "--value", "x")  # copies what is left
    kinds = _kinds(host)
    assert [k for k in kinds if k.startswith("systemd:")] == \
        [f"systemd:file-system:/srv{i}" for i in range(6)]
    assert len(kinds) == 13
    assert json.loads(host.ok("eventlog", "check", "--json").stdout)["verified"] == \
        ["sha256:15"]


def _trusted_first(host: Host, log: Path, tmp_path: Path, *, systemd_only: bool = False
                   ) -> tuple[Path, Path]:
    """A systemd record and attest's own on PCR 15, a policy from the host as it is now
    (``systemd_only``: its runtime reference cut to systemd's), and a first artifact."""
    systemd_measure(log, host.sim.tcti, 15, "machine-id:aa", "machine-id")
    host.ok("key", "create")
    host.ok("measure", "command", "--", "ls")
    policy = tmp_path / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    if systemd_only:
        _systemd_only(policy)
    first = tmp_path / "a.jws"
    host.ok("authorize", "--subject", "bot", "--out", str(first), "--", "ls")
    return policy, first


def test_an_unexpected_systemd_record_after_an_acknowledged_prefix_is_denied(
        shared: tuple[Host, Path], tmp_path: Path) -> None:
    host, log = shared
    policy, first = _trusted_first(host, log, tmp_path)
    out = _verify(host, first, policy)
    assert out["accepted"] is True, out
    fact = out["facts"]["runtime_log"]  # type: ignore[index]
    base = f"{fact['count']}:{fact['digest']}"
    # Only the records after the prefix travel: systemd's new one among them.
    systemd_measure(log, host.sim.tcti, 15, "file-system:/mnt:vfat", "filesystem")
    second = tmp_path / "b.jws"
    host.ok("authorize", "--subject", "bot", "--log-base", base, "--out", str(second),
            "--", "ls")
    out = _verify(host, second, policy)
    assert out["reasons"] == ["reference_value_mismatch"], out
    assert "file-system:/mnt:vfat" in json.dumps(out["denials"])


def test_a_systemd_record_never_extended_is_not_extended_by_attest(
        shared: tuple[Host, Path]) -> None:
    # A record written into systemd's log without its extend (a forged record, or a
    # writer that broke systemd's rule) is no crash of attest's: attest never "repairs"
    # it by extending it itself, which would vouch for whatever the record says.
    host, log = shared
    host.ok("measure", "data", "--name", "n", "--value", "1")
    before = json.loads(host.ok("pcr", "read", "15", "--json").stdout)["sha256"]["15"]
    with systemd_lock(log) as fd:
        os.write(fd, record_bytes(15, "machine-id:forged", "machine-id", ["sha256"]))
    # The full read (which alone repairs) copies it last, the PCR lacking just it: the
    # very trace of attest stopping between append and extend, but not attest's record.
    result = host.run("eventlog", "check", "--repair")
    assert result.exit_code == 1 and "eventlog_mismatch" in result.stderr, result.output
    after = json.loads(host.ok("pcr", "read", "15", "--json").stdout)["sha256"]["15"]
    assert after == before
    assert host.run("measure", "data", "--name", "n", "--value", "2").exit_code == 1


def _systemd_only(policy: Path) -> None:
    # reference.systemd without reference.runtime: attest's records are not appraised,
    # systemd's are.
    lines, out, skipping = policy.read_text().splitlines(), [], False
    for line in lines:
        if line.split("#")[0].rstrip() == "  runtime:":
            skipping = True
            continue
        if skipping and line.startswith("    "):
            continue
        skipping = False
        out.append(line)
    policy.write_text("\n".join(out) + "\n")
    text = policy.read_text()
    assert "  systemd: [" in text and "\n  runtime:  " not in text and "\n  runtime:\n" not in text


def test_a_systemd_only_reference_appraises_the_records_after_a_prefix(
        shared: tuple[Host, Path], tmp_path: Path) -> None:
    host, log = shared
    policy, first = _trusted_first(host, log, tmp_path, systemd_only=True)
    out = _verify(host, first, policy)
    assert out["accepted"] is True, out
    fact = out["facts"]["runtime_log"]  # type: ignore[index]
    systemd_measure(log, host.sim.tcti, 15, "file-system:/mnt:vfat", "filesystem")
    second = tmp_path / "b.jws"
    host.ok("authorize", "--subject", "bot", "--log-base", f"{fact['count']}:{fact['digest']}",
            "--out", str(second), "--", "ls")
    assert _verify(host, second, policy)["reasons"] == ["reference_value_mismatch"]
