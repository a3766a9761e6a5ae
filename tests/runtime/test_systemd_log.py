"""systemd's log as attest reads and locks it, without a TPM: which records are copied,
which path is shared, and what a damaged or hostile systemd log gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attest.errors import EnvironmentProblem, EventLogError, EventLogMismatch
from attest.eventlog.cel import RS, CelRecord, parse_cel
from attest.host.runtime.systemd_log import (
    DEFAULT_SYSTEMD_LOG,
    SystemdLog,
    systemd_log_path,
    unmirrored,
)
from attest.inputfile import MAX_LOG_BYTES
from tests.runtime.systemd_writer import record_bytes

BANKS = ["sha256"]


def _systemd(*words: str, pcr: int = 15) -> tuple[CelRecord, ...]:
    return parse_cel(b"".join(record_bytes(pcr, w, "machine-id", BANKS) for w in words)).records


def test_the_records_attest_lacks_are_the_ones_after_its_copies() -> None:
    theirs = _systemd("a", "b", "c")
    assert [r.content["string"] for r in unmirrored((), theirs, 15) or ()] == ["a", "b", "c"]
    assert [r.content["string"] for r in unmirrored(theirs[:2], theirs, 15) or ()] == ["c"]
    assert unmirrored(theirs, theirs, 15) == []


def test_records_of_other_pcrs_and_nv_indexes_are_not_copied() -> None:
    theirs = (*_systemd("phase", pcr=11), *_systemd("mine"))
    nv = parse_cel(RS + b'{"nv_index":30474752,"digests":[{"hashAlg":"sha256","digest":"'
                   + b"00" * 32 + b'"}],"content_type":"systemd","content":{}}\n').records
    assert [r.content["string"] for r in unmirrored((), (*theirs, *nv), 15) or ()] == ["mine"]


def test_copies_that_are_no_prefix_of_systemd_log_are_left_to_reconcile() -> None:
    # Another boot's log (systemd's lives in /run), or an edited one: nothing is copied.
    assert unmirrored(_systemd("old"), _systemd("new", "newer"), 15) is None
    assert unmirrored(_systemd("a", "b"), _systemd("a"), 15) is None


def test_a_copy_whose_digest_differs_is_no_prefix() -> None:
    ours = _systemd("a")
    edited = parse_cel(record_bytes(15, "a", "machine-id", BANKS).replace(
        ours[0].digests["sha256"].hex().encode(), b"11" * 32)).records
    assert unmirrored(edited, ours, 15) is None


def test_another_tools_record_on_the_pcr_is_refused() -> None:
    foreign = parse_cel(record_bytes(15, "x", "machine-id", BANKS).replace(
        b'"content_type":"systemd"', b'"content_type":"attest"')).records
    with pytest.raises(EventLogMismatch, match="copies only systemd's own records"):
        unmirrored((), (*_systemd("a"), *foreign), 15)


def test_the_shared_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ATTEST_SYSTEMD_LOG", "ATTEST_TCTI", "TPM2TOOLS_TCTI"):
        monkeypatch.delenv(name, raising=False)
    assert systemd_log_path() == DEFAULT_SYSTEMD_LOG
    monkeypatch.setenv("ATTEST_TCTI", "device:/dev/tpmrm0")
    assert systemd_log_path() == DEFAULT_SYSTEMD_LOG
    # A simulator's PCR 15 is not the one systemd extends.
    monkeypatch.setenv("ATTEST_TCTI", "swtpm:path=/tmp/s")
    assert systemd_log_path() is None
    monkeypatch.setenv("ATTEST_SYSTEMD_LOG", str(tmp_path / "m.log"))
    assert systemd_log_path() == tmp_path / "m.log"
    for off in ("", "off", "none"):
        monkeypatch.setenv("ATTEST_SYSTEMD_LOG", off)
        assert systemd_log_path() is None


def test_reading_under_the_lock_and_without_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "tpm2-measure.log"
    assert SystemdLog(path).read() == ()
    with SystemdLog(path).locked() as shared:
        assert path.exists() and path.stat().st_mode & 0o7777 == 0o600  # systemd's mode
        assert shared.read() == ()
    path.write_bytes(record_bytes(15, "a", "machine-id", BANKS))
    with SystemdLog(path).locked() as shared:
        assert [r.content["string"] for r in shared.read()] == ["a"]


def test_a_sticky_log_is_an_append_that_never_finished(tmp_path: Path) -> None:
    path = tmp_path / "tpm2-measure.log"
    path.write_bytes(record_bytes(15, "a", "machine-id", BANKS))
    os.chmod(path, 0o1600)
    with SystemdLog(path).locked() as shared, pytest.raises(EventLogMismatch,
                                                             match="sticky bit"):
        shared.read()


def test_a_torn_or_hostile_systemd_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tpm2-measure.log"
    path.write_bytes(record_bytes(15, "a", "machine-id", BANKS)[:-1])
    with pytest.raises(EventLogError, match="systemd's measurement log"):
        SystemdLog(path).read()
    path.write_bytes(RS + b'{"pcr":15,"pcr":15}\n')
    with pytest.raises(EventLogError):
        SystemdLog(path).read()
    with open(path, "wb") as handle:
        handle.truncate(MAX_LOG_BYTES + 1)
    with pytest.raises(EventLogError, match="bound"):
        SystemdLog(path).read()


def test_a_log_that_cannot_be_opened_is_an_environment_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EnvironmentProblem), SystemdLog(blocker / "tpm2-measure.log").locked():
        pass
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(EnvironmentProblem, match="not a regular file"), \
            SystemdLog(tmp_path / "fifo").locked():
        pass


def test_sharing_follows_the_tcti_the_command_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """--tcti decides, not an ATTEST_TCTI left set (review): a simulator named on the
    command line shares nothing even with no environment, and a real TPM named on the
    command line shares even when the environment names a simulator."""
    from attest import tctiuse
    from attest.host.runtime.systemd_log import DEFAULT_SYSTEMD_LOG, systemd_log_path

    monkeypatch.delenv("ATTEST_SYSTEMD_LOG", raising=False)
    monkeypatch.delenv("TPM2TOOLS_TCTI", raising=False)
    monkeypatch.delenv("ATTEST_TCTI", raising=False)
    monkeypatch.setattr(tctiuse, "command_tcti", "swtpm:path=/tmp/s.sock")
    assert systemd_log_path() is None
    monkeypatch.setenv("ATTEST_TCTI", "swtpm:path=/tmp/s.sock")
    monkeypatch.setattr(tctiuse, "command_tcti", "device:/dev/tpmrm0")
    assert systemd_log_path() == DEFAULT_SYSTEMD_LOG
    monkeypatch.setattr(tctiuse, "command_tcti", None)
    assert systemd_log_path() is None
