"""The host's runtime measurement log: one CEL-JSON file, one PCR, kept in step with it.

Every measurement is, under an exclusive lock:
  1. reconcile the log with the PCR (see :func:`reconcile`);
  2. append the record and fsync it (write-ahead: the log never lags the PCR);
  3. extend the PCR with the record's digests.

A crash can then leave exactly two kinds of disagreement, both detected by the
next call: an incomplete last line (the append did not finish, so the extend
never ran: the line is dropped), or a complete record the PCR lacks (the crash
came between 2 and 3: the record is extended now, which is what was meant).
Any other disagreement means something outside attest touched the PCR or the
log; that is never "repaired", only reported.

After 3, a checkpoint (attest.host.runtime.checkpoint) says where the log stood, so
that the next reconcile, while the file is untouched since, reads one record instead
of the log; any doubt about the checkpoint, and any disagreement found from it, falls
back to the full read, which alone repairs or reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest import strictjson
from attest.durable import fsync_dir
from attest.errors import EnvironmentProblem, EventLogError, EventLogMismatch, UsageError
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import (
    ATTEST_CONTENT_TYPE,
    RS,
    CelLog,
    CelRecord,
    attest_record,
    check_content_bound,
    encode_record,
    parse_cel,
)
from attest.eventlog.replay import last_events, replay, reset_value
from attest.eventlog.tcg import TcgEvent
from attest.evidence.pcrs import PCR_COUNT, RESETTABLE_PCRS, PCRSelection, digest, parse_index
from attest.host.runtime import checkpoint as checkpoints
from attest.host.runtime.checkpoint import Checkpoint, Mark
from attest.host.runtime.systemd_log import SystemdLog, systemd_log_path, unmirrored
from attest.host.runtime.waitlock import flock_within
from attest.inputfile import MAX_LOG_BYTES, MAX_RECORD_BYTES, read_home_file
from attest.tpm.device import TPM
from attest.tpm.files import private_dir, write_private
from attest.tpm.pcr import active_banks, extend, read_pcrs

_log = logging.getLogger(__name__)

# PCR 15: not resettable from locality 0, and unused by firmware and boot loaders.
# systemd (measured UKIs) extends it from user space too: attest shares it through
# systemd's log and lock (attest.host.runtime.systemd_log; `attest docs measurement`).
DEFAULT_RUNTIME_PCR = 15
LOG_NAME = "runtime.cel"
LOCK_NAME = "runtime.lock"
# Which TPM boot the log belongs to: a PCR back at its boot value is ambiguous (a
# reboot, or a crash before the first extend); the TPM's boot counters are not.
EPOCH_NAME = "runtime.epoch"
LOCK_TIMEOUT_S = 30.0
LOG_MODE = 0o600


def runtime_pcr(explicit: int | None = None, *, allow_resettable: bool = False) -> int:
    """--pcr, else ATTEST_RUNTIME_PCR, else 15; a resettable PCR only when allowed."""
    if explicit is None:
        env = os.environ.get("ATTEST_RUNTIME_PCR")
        try:
            explicit = parse_index(env) if env else DEFAULT_RUNTIME_PCR
        except UsageError as exc:
            raise UsageError(f"ATTEST_RUNTIME_PCR: {exc.message}", hint=exc.hint) from None
    if not 0 <= explicit < PCR_COUNT:
        raise UsageError(f"PCR index {explicit} out of range 0-{PCR_COUNT - 1}")
    if explicit in RESETTABLE_PCRS and not allow_resettable:
        raise UsageError(
            f"PCR {explicit} can be reset from locality 0: anyone with TPM access could reset "
            "it and replay a clean history",
            hint="use a PCR that software cannot reset (the default is 15), or pass "
            "--allow-resettable if you accept that",
        )
    return explicit


@dataclass
class Reconciliation:
    """What reconciling the log with the PCR found and did, in words for the user."""

    notes: list[str] = field(default_factory=list)
    # systemd's records copied into the log (not a repair: the routine that lets the log
    # explain a PCR systemd shares), in words for the user.
    copied: list[str] = field(default_factory=list)
    # The log as it stands afterwards, and whether its file changed (a torn tail
    # dropped, a previous boot's log archived): callers need not read it again.
    log: CelLog = field(default_factory=lambda: CelLog(()))
    file_changed: bool = False
    # The PCR's value in each active bank as read, when reconciling left the PCR as it
    # was; empty after a repair extended it.
    values: dict[str, bytes] = field(default_factory=dict)
    # Where the log stands: its records, the recnum the next one gets, its length in
    # bytes, its prefix digest (None for a log that has none: not JSON-SEQ), and the
    # recent (count, offset, digest) marks an artifact's runtime_log_base is found by.
    # ``log`` holds the records that were read: all of them after a full read, none
    # from the checkpoint (plus, after a measurement, the record appended).
    count: int = 0
    next_recnum: int = 0
    size: int = 0
    prefix: bytes | None = log_prefix.EMPTY
    marks: tuple[Mark, ...] = ()
    # Bytes of the log read to reconcile, and whether the checkpoint was enough.
    bytes_read: int = 0
    from_checkpoint: bool = False


class RuntimeLog:
    """The runtime log of one home: $ATTEST_HOME/runtime.cel."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / LOG_NAME
        self.lock_path = home / LOCK_NAME
        # systemd's log, locked, while this log is locked and shares its PCR with systemd.
        self.systemd: SystemdLog | None = None

    @contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Exclusive across processes: extend order and log order must be the same order.

        With a systemd log to share the PCR with (attest.host.runtime.systemd_log), its
        lock too, taken second (systemd takes only its own: no cycle), so that neither
        systemd nor attest extends while the other reconciles, appends and extends."""
        with self._own_lock(timeout):
            path = systemd_log_path()
            if path is None:
                yield
                return
            with SystemdLog(path).locked(timeout) as shared:
                self.systemd = shared
                try:
                    yield
                finally:
                    self.systemd = None

    @contextmanager
    def _own_lock(self, timeout: float) -> Iterator[None]:
        private_dir(self.home)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Not the caller's input: a busy host (exit 3).
            flock_within(fd, timeout, lambda: EnvironmentProblem(
                f"another attest process holds {self.lock_path} for more than {timeout:g} s",
                hint="`fuser` on that file names the process; retry when it is done"))
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def read(self, *, allow_torn_tail: bool = False) -> CelLog:
        return self.load(allow_torn_tail=allow_torn_tail)[1]

    def load(self, *, allow_torn_tail: bool = False) -> tuple[bytes, CelLog]:
        """The log's bytes and their parse; empty when there is no log yet."""
        try:
            data = read_home_file(self.path, "runtime log", MAX_LOG_BYTES)
        except FileNotFoundError:
            return b"", CelLog(())
        return data, parse_cel(data, allow_torn_tail=allow_torn_tail)

    def append(self, record: CelRecord) -> bytes:
        """Append one record and make it durable before returning; returns its bytes."""
        data = encode_record(record)
        created = not self.path.exists()
        # The log names what this host ran: its owner's alone (a log of an older attest,
        # made 0644, is tightened on the next append).
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
        try:
            if os.fstat(fd).st_mode & 0o777 != LOG_MODE:
                os.fchmod(fd, LOG_MODE)
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.home)
        return data

    def read_range(self, start: int, end: int) -> bytes:
        """The log's bytes from ``start`` to ``end`` (lock held: the file only grows)."""
        if not 0 <= start <= end <= MAX_LOG_BYTES:
            raise EventLogError(f"no bytes {start}-{end} in {self.path}")
        with open(self.path, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
        if len(data) != end - start:
            raise EventLogError(f"{self.path} is shorter than {end} bytes")
        return data

    def drop_torn_tail(self, log: CelLog) -> None:
        size = self.path.stat().st_size
        with open(self.path, "r+b") as handle:
            handle.truncate(size - len(log.torn_tail))
            handle.flush()
            os.fsync(handle.fileno())

    def archive(self) -> Path:
        """Move the log aside (a new boot epoch starts an empty one)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.home / f"{LOG_NAME}.{stamp}"
        os.replace(self.path, target)
        self.epoch_path.unlink(missing_ok=True)
        checkpoints.forget(self.home)
        fsync_dir(self.home)
        return target

    @property
    def epoch_path(self) -> Path:
        return self.home / EPOCH_NAME

    def read_epoch(self) -> tuple[int, int] | None:
        """The TPM boot (resetCount, restartCount) the log was started in, if recorded."""
        try:
            data = strictjson.loads(read_home_file(self.epoch_path, "runtime log epoch",
                                                   MAX_RECORD_BYTES).decode("utf-8", "replace"))
            return int(data["reset_count"]), int(data["restart_count"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise EventLogError(f"unreadable {self.epoch_path}: {exc}") from exc

    def write_epoch(self, counts: tuple[int, int]) -> None:
        write_private(self.epoch_path, json.dumps(
            {"reset_count": counts[0], "restart_count": counts[1]}).encode())


def log_pcr(records: Sequence[CelRecord]) -> int | None:
    """The single PCR a runtime log extends, or None for an empty log."""
    pcrs = {r.pcr for r in records if r.extends and r.pcr is not None}
    if len(pcrs) > 1:
        raise EventLogError(f"the runtime log extends several PCRs ({sorted(pcrs)}); attest "
                            "keeps one runtime PCR")
    return next(iter(pcrs), None)


Measurement = TcgEvent | CelRecord


def _replayed(events: Sequence[Measurement], pcr: int,
              banks: Sequence[str]) -> dict[str, bytes]:
    values = replay(events, banks)
    return {bank: values.get(bank, {}).get(pcr, reset_value(bank, pcr)) for bank in banks}


def boot_events(pcr: int) -> list[TcgEvent]:
    """The boot log's events that extend ``pcr``: firmware or a boot loader may extend it."""
    from attest.eventlog.tcg import parse_tcg
    from attest.host.runtime.check import default_boot_log

    path = default_boot_log()
    if path is None:
        return []
    data = read_home_file(path, "boot log", MAX_LOG_BYTES)
    return [e for e in parse_tcg(data).events if e.pcr == pcr and e.extends]


def _refuse_shared_pcr(pcr: int) -> None:
    """A verifier explains the runtime PCR by the runtime log alone (one log per PCR):
    measuring into a PCR the boot log also extends yields artifacts it always denies."""
    shared = boot_events(pcr)
    if shared:
        raise UsageError(
            f"the boot log extends PCR {pcr} ({shared[0].label}): a verifier explains the "
            "runtime PCR by the runtime log alone, so every artifact would be denied",
            hint="measure into a PCR firmware and boot loaders leave alone (--pcr, "
                 "ATTEST_RUNTIME_PCR) and set pcrs.runtime to it")


def reconcile(tpm: TPM, log: RuntimeLog, pcr: int, *, repair: bool,
              full: bool = False) -> Reconciliation:
    """Check that the runtime log explains the PCR; with ``repair``, finish what a crash left.

    Call with the lock held. Reads only the records after the checkpoint when it holds
    (see attest.host.runtime.checkpoint), else, or with ``full``, the whole log (and
    then writes a checkpoint). Raises :class:`EventLogMismatch` for a disagreement that
    no crash of attest can produce (something else extended the PCR, or the log was
    edited), and for a crash's trace when ``repair`` is off.
    """
    if not full:
        quick = _from_checkpoint(tpm, log, pcr)
        if quick is not None:
            return quick
    result = Reconciliation()
    data, state = log.load(allow_torn_tail=True)
    result.bytes_read = len(data)
    if state.torn_tail:
        what = (f"{log.path} ends in an incomplete record ({len(state.torn_tail)} bytes): "
                "attest stopped while appending it, before extending the PCR")
        if not repair:
            raise EventLogMismatch(what, hint="`attest measure` or `attest eventlog check "
                                   "--repair` drops it")
        log.drop_torn_tail(state)
        data = data[:len(data) - len(state.torn_tail)]
        state = CelLog(state.records)
        result.file_changed = True
        result.notes.append(what + "; dropped it")
    if log.systemd is not None:
        data, state = _mirror_systemd(tpm, log, pcr, data, state, result)
    result.log = state
    records = state.records
    result.count, result.next_recnum, result.size = (len(records), state.next_recnum(),
                                                     len(data))
    check_content_bound(records)
    existing = log_pcr(records)
    if existing is not None and existing != pcr:
        raise UsageError(f"the runtime log extends PCR {existing}, not PCR {pcr}",
                         hint=f"pass --pcr {existing}, or start a new log by moving {log.path} "
                         "away after a reboot")
    banks = active_banks(tpm)
    selection = PCRSelection.of({bank: [pcr] for bank in banks})
    now = {bank: value for (bank, _), value in read_pcrs(tpm, selection).items()}
    result.values = dict(now)
    _refuse_shared_pcr(pcr)
    if _replayed(records, pcr, banks) == now:
        _save_checkpoint(log, pcr, result, _mark_full(log, data, result))
        return result
    if not records:
        bank = banks[0]
        raise EventLogMismatch(
            f"PCR {pcr} ({bank}) holds {now[bank].hex()} but the runtime log {log.path} "
            f"is empty or missing and replays to the reset value "
            f"{_replayed((), pcr, banks)[bank].hex()}: the log was emptied, or something "
            "else extended the PCR since the TPM started",
            hint=f"no log attest starts now could explain PCR {pcr}; reboot (or restart the "
            "simulator), or measure into another PCR with --pcr")
    epoch = log.read_epoch()
    restarted = (epoch != boot_counts(tpm) if epoch is not None
                 # A log from before epochs were recorded: the PCR back at its boot
                 # value is the sign, checked after the crash trace below.
                 else None)
    if restarted:
        return _new_epoch(tpm, log, pcr, len(records), repair, result)
    last = records[-1]
    # Only attest's own record can be the one a crash left unextended: systemd extends
    # before it logs, and a copied systemd record was extended by systemd.
    if (last.extends and last.content_type == ATTEST_CONTENT_TYPE
            and _replayed(records[:-1], pcr, banks) == now):
        what = (f"record {last.recnum} ({last.label}) is in the log but was never extended "
                f"into PCR {pcr}: attest stopped between the two")
        if not repair:
            raise EventLogMismatch(what, hint="`attest measure` or `attest eventlog check "
                                   "--repair` extends it")
        extend(tpm, pcr, dict(last.digests))
        result.values = {}
        result.notes.append(what + "; extended it now")
        _mark_full(log, data, result)
        return result
    if restarted is None and _replayed((), pcr, banks) == now:
        return _new_epoch(tpm, log, pcr, len(records), repair, result)
    bank = banks[0]
    raise EventLogMismatch(
        f"PCR {pcr} ({bank}) is {now[bank].hex()} but {log.path} replays to "
        f"{_replayed(records, pcr, banks)[bank].hex()}: something other than attest "
        "extended the PCR, or the log was edited. Last records: "
        + "; ".join(last_events(records, pcr)),
        hint=_unexplained_hint(log, pcr),
    )


def _unexplained_hint(log: RuntimeLog, pcr: int) -> str:
    hint = ("attest refuses to measure on top of a history it cannot explain; investigate, "
            "then reboot to start a clean epoch")
    if log.systemd is None and pcr == DEFAULT_RUNTIME_PCR:
        # systemd extends 15 too: without its log, its extends are unexplained.
        hint += (f"; if systemd measures into PCR {pcr} here, let attest read its log "
                 "(ATTEST_SYSTEMD_LOG, `attest docs measurement`)")
    return hint


def _new_epoch(tpm: TPM, log: RuntimeLog, pcr: int, count: int, repair: bool,
               result: Reconciliation) -> Reconciliation:
    # The TPM restarted: the log belongs to the previous boot. Keep it, and start
    # this boot's log empty.
    if not repair:
        raise EventLogMismatch(f"the TPM restarted since {log.path} was written ({count} "
                               "records of the previous boot)",
                               hint="`attest measure` archives the old log and starts anew")
    moved = log.archive()
    result.log = CelLog(())
    result.count = result.next_recnum = result.size = 0
    result.prefix, result.marks = log_prefix.EMPTY, ()
    result.file_changed = True
    result.notes.append(f"the TPM restarted: the previous boot's log is kept as {moved.name}; "
                        f"this boot's log for PCR {pcr} starts empty")
    if log.systemd is not None:
        # This boot's systemd records come first in this boot's log, and must explain
        # the PCR: nothing else has extended it yet.
        data, state = _mirror_systemd(tpm, log, pcr, b"", CelLog(()), result)
        if state.records:
            banks = active_banks(tpm)
            now = {bank: value for (bank, _), value in read_pcrs(
                tpm, PCRSelection.of({bank: [pcr] for bank in banks})).items()}
            if _replayed(state.records, pcr, banks) != now:
                raise EventLogMismatch(
                    f"PCR {pcr} is not what systemd's records in {log.systemd.path} replay "
                    "to: something other than systemd and attest extended it this boot",
                    hint="investigate, then reboot to start a clean epoch")
            result.log, result.values = state, now
            result.count, result.next_recnum, result.size = (
                len(state.records), state.next_recnum(), len(data))
            _mark_full(log, data, result)
    return result


def _mirror_systemd(tpm: TPM, log: RuntimeLog, pcr: int, data: bytes, state: CelLog,
                    result: Reconciliation) -> tuple[bytes, CelLog]:
    """Copy systemd's records for ``pcr`` that the log lacks onto its end (both locks
    held); returns the log's bytes and parse afterwards."""
    shared = log.systemd
    if shared is None:
        return data, state
    missing = unmirrored(state.records, shared.read(), pcr)
    if not missing:
        return data, state
    counts = boot_counts(tpm)
    if state.records and log.read_epoch() not in (None, counts):
        return data, state  # a previous boot's log: archived first, then copied into anew
    if not state.records:
        log.write_epoch(counts)
    # Numbered as attest numbers its records (a CEL log's recnums are all or none):
    # systemd's digests bind no recnum, so the copy extends what systemd extended.
    first = state.next_recnum()
    data += b"".join(log.append(dataclasses.replace(record, recnum=first + n))
                     for n, record in enumerate(missing))
    result.file_changed = True
    plural = "" if len(missing) == 1 else "s"
    result.copied.append(f"copied {len(missing)} record{plural} systemd extended into PCR "
                         f"{pcr} since attest last read {shared.path}")
    return data, parse_cel(data)


def _from_checkpoint(tpm: TPM, log: RuntimeLog, pcr: int) -> Reconciliation | None:
    """The reconciliation the checkpoint describes, when the log file is untouched since
    it was written (same inode, length, change and modification times, and the same
    last record at its end) and the TPM holds the PCR values it says; else None, and the
    full read decides, repairs or reports. Any write to the log by anyone, an
    interrupted append included, changes its ctime: the file is then read in full."""
    mark = checkpoints.load(log.home)
    if mark is None or mark.pcr != pcr:
        return None
    try:
        if log.read_epoch() != mark.epoch:
            return None
        with open(log.path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if (not stat.S_ISREG(info.st_mode) or info.st_size != mark.offset
                    or checkpoints.file_identity(info) != mark.file):
                return None
            handle.seek(mark.offset - mark.last_len)
            boundary = handle.read(mark.last_len)
    except (OSError, EventLogError):
        return None
    if checkpoints.boundary_digest(boundary) != mark.last or not boundary.startswith(RS):
        return None
    banks = active_banks(tpm)
    if set(banks) != set(mark.values):
        return None
    selection = PCRSelection.of({bank: [pcr] for bank in banks})
    now = {bank: value for (bank, _), value in read_pcrs(tpm, selection).items()}
    if now != mark.values:
        return None  # something extended the PCR: the full read names it
    _refuse_shared_pcr(pcr)
    return Reconciliation(values=now, count=mark.count, next_recnum=mark.next_recnum,
                          size=mark.offset, prefix=mark.prefix, marks=mark.marks,
                          bytes_read=len(boundary), from_checkpoint=True)


def _mark_full(log: RuntimeLog, data: bytes, result: Reconciliation) -> bytes:
    """``result``'s prefix digest and marks from the whole log's bytes: the current
    prefix, and those of the old checkpoint's marks the log still has (an artifact
    may be sent from one). Returns the last record's bytes (empty for none)."""
    try:
        framed = log_prefix.records_of(data)
    except EventLogError:
        result.prefix, result.marks = None, ()  # not JSON-SEQ: no prefix digest
        return b""
    old = checkpoints.load(log.home)
    wanted = {m.count for m in old.marks} if old is not None else set()
    wanted.add(len(framed))
    marks: list[Mark] = []
    running, offset = log_prefix.EMPTY, 0
    sha256 = hashlib.sha256
    for count, record in enumerate(framed, 1):
        running = sha256(running + record).digest()
        offset += len(record)
        if count in wanted:
            marks.append(Mark(count, offset, running))
    result.prefix = running
    result.marks = tuple(marks[-checkpoints.RING:])
    return framed[-1] if framed else b""


def _save_checkpoint(log: RuntimeLog, pcr: int, result: Reconciliation, last: bytes) -> None:
    """Remember where ``result`` leaves the log (``last``: its last record's bytes)."""
    if result.count < 1 or result.prefix is None or not last or not result.values:
        return
    try:
        epoch = log.read_epoch()
    except EventLogError:
        return
    if epoch is None:
        return
    try:
        info = os.stat(log.path)
        if info.st_size != result.size:
            return
        checkpoints.save(log.home, Checkpoint(
            epoch, pcr, result.count, result.next_recnum, result.size, dict(result.values),
            result.prefix, checkpoints.boundary_digest(last), len(last), result.marks,
            checkpoints.file_identity(info)))
    except OSError:
        # A hint: the measurement is done and durable; without a new checkpoint the next
        # reconcile replays from the older one (still true of the log), or reads it all.
        return


def boot_counts(tpm: TPM) -> tuple[int, int]:
    """(resetCount, restartCount) from TPM2_ReadClock: not obfuscated, unlike in quotes."""
    info = tpm.call("reading the TPM clock", tpm.esapi.read_clock)
    return int(info.clockInfo.resetCount), int(info.clockInfo.restartCount)


def measure(tpm: TPM, home: Path, pcr: int, content: dict[str, Any]) -> tuple[CelRecord,
                                                                              Reconciliation]:
    """Append a record for ``content`` and extend ``pcr`` with it, crash-consistently."""
    log = RuntimeLog(home)
    with log.locked():
        done = reconcile(tpm, log, pcr, repair=True)
        record, _ = append_measurement(tpm, log, pcr, content, done)
    return record, done


def append_measurement(tpm: TPM, log: RuntimeLog, pcr: int, content: dict[str, Any],
                       done: Reconciliation) -> tuple[CelRecord, Reconciliation]:
    """Append a record for ``content`` and extend ``pcr`` with it, crash-consistently,
    with the lock held and ``done`` the reconciliation made under it (the log as it
    stands); then checkpoint. Returns the record and the log and PCR after it, as a new
    reconciliation would find them. Issuance measures through this too, so that
    `attest run` reconciles once."""
    if done.count == 0:
        log.write_epoch(boot_counts(tpm))
    record = attest_record(done.next_recnum, pcr, content, active_banks(tpm))
    data = log.append(record)
    extend(tpm, pcr, dict(record.digests))
    _log.info("record %d (%s %s) appended to %s and extended into PCR %d", record.recnum,
              content.get("type"), content.get("name"), log.path, pcr)
    after = _after_append(done, record, data)
    _save_checkpoint(log, pcr, after, data)
    return record, after


def _after_append(done: Reconciliation, record: CelRecord, data: bytes) -> Reconciliation:
    # Each bank's value extended in software: what the TPM now holds, since the lock
    # keeps every other attest process out and reconcile found no foreign extension.
    values = {bank: digest(bank, value + record.digests[bank])
              for bank, value in done.values.items() if bank in record.digests}
    if len(values) != len(done.values):
        values = {}  # a bank without the record's digest: let a reader read them
    count, size = done.count + 1, done.size + len(data)
    prefix = None if done.prefix is None else log_prefix.extend(done.prefix, [data])
    marks = done.marks if prefix is None else (
        *done.marks, Mark(count, size, prefix))[-checkpoints.RING:]
    return Reconciliation(notes=done.notes, copied=done.copied,
                          log=CelLog((*done.log.records, record)),
                          file_changed=True, values=values, count=count,
                          next_recnum=(record.recnum if record.recnum is not None
                                       else done.next_recnum) + 1,
                          size=size, prefix=prefix, marks=marks, bytes_read=done.bytes_read,
                          from_checkpoint=done.from_checkpoint)
