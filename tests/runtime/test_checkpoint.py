"""The host's cost per measurement and per `attest run` does not grow with the boot
(issue 12): reconcile starts from the checkpoint beside the log, and issuance reads only
the bytes after the prefix the verifier acknowledged. The checkpoint is a hint: one that
lies, or a log touched since, sends reconcile back to the full read, which still finds a
log that disagrees with the PCR. On a real swtpm; bytes read are the library's counters
and a wrapper on the log's full read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from attest.artifact import jws
from attest.artifact.model import RuntimeLogBase
from attest.errors import EventLogMismatch
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import attest_record, encode_record, measurement_content, parse_cel
from attest.host.run import prepare
from attest.host.runtime import checkpoint as checkpoints
from attest.host.runtime.log import (
    DEFAULT_RUNTIME_PCR,
    Reconciliation,
    RuntimeLog,
    measure,
    reconcile,
)
from attest.host.runtime.prefixes import PrefixMemory
from attest.tpm.device import TPM, open_tpm
from attest.tpm.pcr import active_banks, extend
from tests.conftest import Host

PCR = DEFAULT_RUNTIME_PCR
LONG = 400  # records: enough that a full read is hundreds of KiB, few enough to be fast


@contextmanager
def _tpm(host: Host) -> Iterator[TPM]:
    with open_tpm(host.sim.tcti) as tpm:
        yield tpm


def _content(n: int) -> dict[str, Any]:
    return measurement_content("data", f"item-{n}", {"sha256": bytes(32)})


def _bulk(tpm: TPM, home: Path, count: int) -> None:
    """``count`` records appended and extended in order, as `attest measure` would, but
    without a reconcile or a checkpoint each (a long boot, made fast)."""
    log = RuntimeLog(home)
    banks = active_banks(tpm)
    first = log.read().next_recnum()
    if first == 0:
        measure(tpm, home, PCR, _content(0))  # the epoch file, as the first measure writes
        first = 1
    with open(log.path, "ab") as handle:
        for n in range(first, first + count):
            record = attest_record(n, PCR, _content(n), banks)
            handle.write(encode_record(record))
            extend(tpm, PCR, dict(record.digests))


def _reconcile(tpm: TPM, home: Path) -> Reconciliation:
    log = RuntimeLog(home)
    with log.locked():
        return reconcile(tpm, log, PCR, repair=True)


def _edit_checkpoint(home: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = home / checkpoints.CHECKPOINT_NAME
    data = json.loads(path.read_bytes())
    edit(data)
    path.write_bytes(json.dumps(data).encode())


@pytest.fixture
def long_boot(fresh_host: Host) -> Host:
    """A host whose log holds LONG records, the last one measured by attest (so the
    checkpoint stands after it)."""
    with _tpm(fresh_host) as tpm:
        _bulk(tpm, fresh_host.home, LONG)
        measure(tpm, fresh_host.home, PCR, _content(LONG + 1))
    return fresh_host


def test_reconcile_at_a_long_log_reads_only_its_last_record(long_boot: Host) -> None:
    log = RuntimeLog(long_boot.home)
    size = log.path.stat().st_size
    with _tpm(long_boot) as tpm:
        done = _reconcile(tpm, long_boot.home)
        assert done.from_checkpoint
        # The boundary record alone: not the log (hundreds of KiB).
        assert done.bytes_read < 1024 < 100 * 1024 < size
        assert done.count == len(log.read().records)
        assert done.size == size
        assert done.prefix == log_prefix.prefix_digest(log.path.read_bytes())
        # A measurement from it, then another reconcile: still the boundary only.
        measure(tpm, long_boot.home, PCR, _content(LONG + 2))
        again = _reconcile(tpm, long_boot.home)
    assert again.from_checkpoint and again.bytes_read < 1024
    assert again.count == done.count + 1
    assert "ok" in long_boot.ok("eventlog", "check").output


def _acknowledged(host: Host) -> tuple[RuntimeLog, RuntimeLogBase]:
    """A key to sign with, and the whole runtime log as the prefix the verifier
    "store:test" acknowledged: what prepare() then sends from."""
    host.ok("key", "create")
    log = RuntimeLog(host.home)
    data = log.path.read_bytes()
    known = RuntimeLogBase(len(log_prefix.records_of(data)), log_prefix.prefix_digest(data))
    PrefixMemory(host.home).put("store:test", log.read_epoch(), known)
    return log, known


def test_run_at_a_long_log_never_reads_the_whole_log(long_boot: Host,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare() from a prefix the verifier acknowledged: one reconcile from the
    checkpoint, the record measured, and only the bytes after the prefix read."""
    home = long_boot.home
    log, known = _acknowledged(long_boot)
    full_reads: list[int] = []
    load = RuntimeLog.load

    def counting_load(self: RuntimeLog, **kwargs: Any) -> tuple[bytes, Any]:
        loaded = load(self, **kwargs)
        full_reads.append(len(loaded[0]))
        return loaded

    monkeypatch.setattr(RuntimeLog, "load", counting_load)
    with _tpm(long_boot) as tpm:
        made = prepare(tpm, home, ["/bin/true"], subject="s", key_name="default",
                       nonce=None, ttl=60, verifier="store:test")
    made.executable.close()
    assert full_reads == []
    evidence = jws.parse(made.artifact).claims.evidence
    assert evidence.runtime_log_base == known
    after = log.path.read_bytes()
    assert evidence.runtime_log == log_prefix.split(after, known.count)[1]
    assert len(parse_cel(evidence.runtime_log).records) == 1
    monkeypatch.undo()
    assert "ok" in long_boot.ok("eventlog", "check").output


# Each way a checkpoint can lie, or stop describing the log.
LIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "offset": lambda c: c.update(offset=c["offset"] - 1),
    "values": lambda c: c.update(values={b: "00" * (len(v) // 2)
                                         for b, v in c["values"].items()}),
    "boundary": lambda c: c.update(last="00" * 32),
    "epoch": lambda c: c.update(epoch=[c["epoch"][0] + 1, c["epoch"][1]]),
    "file": lambda c: c.update(file=[c["file"][0], c["file"][1] - 1, c["file"][2]]),
    "pcr": lambda c: c.update(pcr=16),
    "garbage": lambda c: c.clear(),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_lying_checkpoint_falls_back_to_the_full_read(fresh_host: Host, lie: str) -> None:
    home = fresh_host.home
    with _tpm(fresh_host) as tpm:
        for n in range(3):
            measure(tpm, home, PCR, _content(n))
        size = RuntimeLog(home).path.stat().st_size
        _edit_checkpoint(home, LIES[lie])
        fell_back = _reconcile(tpm, home)
        assert not fell_back.from_checkpoint
        assert fell_back.bytes_read == size
        assert fell_back.count == 3
        # The full read wrote a true checkpoint again.
        assert _reconcile(tpm, home).from_checkpoint
        # Something other than attest extends the PCR; the checkpoint lies again.
        extend(tpm, PCR, {bank: bytes(32 if bank == "sha256" else 20)
                          for bank in active_banks(tpm)})
        _edit_checkpoint(home, LIES[lie])
        with pytest.raises(EventLogMismatch, match="something other than attest"):
            _reconcile(tpm, home)


def test_an_in_place_edit_of_an_early_record_is_found_despite_the_checkpoint(
        long_boot: Host) -> None:
    """Same length, mtime put back: the ctime still moved, so the full read runs and
    finds the record that no longer hashes to what was extended."""
    path = RuntimeLog(long_boot.home).path
    info = path.stat()
    data = path.read_bytes()
    assert b"item-5" in data
    path.write_bytes(data.replace(b"item-5", b"item-X", 1))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    with _tpm(long_boot) as tpm, pytest.raises(EventLogMismatch, match="altered"):
        _reconcile(tpm, long_boot.home)


def test_crash_traces_after_a_checkpoint_are_repaired_as_without_one(
        long_boot: Host) -> None:
    home = long_boot.home
    log = RuntimeLog(home)
    with _tpm(long_boot) as tpm:
        # Stopped between append and extend: the record is extended now.
        done = _reconcile(tpm, home)
        record = attest_record(done.next_recnum, PCR, _content(9000), active_banks(tpm))
        log.append(record)
        repaired = _reconcile(tpm, home)
        assert not repaired.from_checkpoint
        assert any("never extended" in note for note in repaired.notes)
        # Stopped while appending: the incomplete record is dropped.
        with open(log.path, "ab") as handle:
            handle.write(b"\x1e{\"recnum\": 99")
        dropped = _reconcile(tpm, home)
        assert not dropped.from_checkpoint
        assert any("incomplete record" in note for note in dropped.notes)
        measure(tpm, home, PCR, _content(9001))
        assert _reconcile(tpm, home).from_checkpoint
    assert "ok" in long_boot.ok("eventlog", "check").output


def test_a_lying_mark_sends_the_records_after_the_prefix_all_the_same(
        long_boot: Host) -> None:
    """The ring's offsets are hints too: one that points elsewhere is not sent from."""
    home = long_boot.home
    log, known = _acknowledged(long_boot)

    def moved(c: dict[str, Any]) -> None:
        c["marks"] = [[m[0], m[1] - 300 if m[0] == known.count else m[1], m[2]]
                      for m in c["marks"]]

    _edit_checkpoint(home, moved)
    with _tpm(long_boot) as tpm:
        made = prepare(tpm, home, ["/bin/true"], subject="s", key_name="default",
                       nonce=None, ttl=60, verifier="store:test")
    made.executable.close()
    evidence = jws.parse(made.artifact).claims.evidence
    assert evidence.runtime_log_base == known
    assert evidence.runtime_log == log_prefix.split(log.path.read_bytes(), known.count)[1]
