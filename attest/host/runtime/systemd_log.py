"""Sharing the runtime PCR with systemd: its userspace measurement log and its lock.

systemd (systemd-pcrextend, systemd-cryptsetup, ...) extends PCR 15 and logs every
extend as one CEL-JSON record in ``/run/log/systemd/tpm2-measure.log`` (JSON-SEQ,
content type ``systemd``, no ``recnum``). It opens that file ``O_APPEND|O_CREAT``
with mode 0600 (only root may take its lock), takes ``flock(LOCK_EX)`` on it, then
extends, then appends the record and fsyncs, and only then releases the lock; while
writing it sets the file's sticky bit, so a lock taken on a file with that bit set
finds an append that never finished. Other tools are meant to follow the same rule.

attest keeps its own log (docs/measurement.md, "Sharing PCR 15 with systemd") and,
with systemd's lock held from reconciling to extending, copies systemd's records for
the runtime PCR that it has not copied yet into its log, where they happened: before
its own next record. attest's log then explains the PCR alone, in the order of the
extends, and goes to the verifier as it always did. Which of systemd's records were
copied is the log itself: its ``systemd`` records are a prefix of systemd's (each
copy numbered in attest's log, which numbers every record; recnum is bound by no digest).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from attest import tctiuse
from attest.errors import EnvironmentProblem, EventLogError, EventLogMismatch
from attest.eventlog.cel import SYSTEMD_CONTENT_TYPE, CelRecord, parse_cel
from attest.host.runtime.waitlock import flock_within
from attest.inputfile import MAX_LOG_BYTES

DEFAULT_SYSTEMD_LOG = Path("/run/log/systemd/tpm2-measure.log")
SYSTEMD_LOG_ENV = "ATTEST_SYSTEMD_LOG"
# systemd's own mode for the file: whoever can open it can lock it, so root alone.
SYSTEMD_LOG_MODE = 0o600
LOCK_TIMEOUT_S = 30.0
# TCTIs of a simulator: systemd's log describes the host's TPM, never a simulator's.
_SIMULATOR_TCTIS = ("swtpm", "mssim")
_OFF = ("", "off", "none")


def systemd_log_path() -> Path | None:
    """The systemd log attest shares its PCR through, or None when it shares none.

    ATTEST_SYSTEMD_LOG names it ("off" or empty: none); else the default path, unless
    the TPM is a simulator (its PCR 15 is not the one systemd extends).
    """
    named = os.environ.get(SYSTEMD_LOG_ENV)
    if named is not None:
        return None if named.strip().lower() in _OFF else Path(named)
    # The TPM this command talks to: --tcti first (attest.tctiuse), as resolve_tcti does.
    tcti = (tctiuse.command_tcti or os.environ.get("ATTEST_TCTI")
            or os.environ.get("TPM2TOOLS_TCTI") or "")
    if tcti.split(":", 1)[0] in _SIMULATOR_TCTIS:
        return None
    return DEFAULT_SYSTEMD_LOG


class SystemdLog:
    """systemd's userspace measurement log, opened and locked the way systemd does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT_S) -> Iterator[SystemdLog]:
        """systemd's lock on its log, for the time attest reconciles, appends and extends.

        Creates the file (and its folder) as systemd would, so that a systemd writer
        arriving meanwhile waits for attest rather than extending unseen. When it can't
        be created because its folder isn't writable and it doesn't exist, systemd has
        made no userspace measurement this boot: attest goes on without the lock. A
        file that exists but cannot be opened is an error: attest could not read it.
        """
        fd = self._open()
        if fd is None:
            yield self  # no file and no right to make one: nothing of systemd's to share
            return
        try:
            flock_within(fd, timeout, lambda: EnvironmentProblem(
                f"systemd's measurement log {self.path} stays locked for more than "
                f"{timeout:g} s", hint="`fuser` on that file names the process holding it"))
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise EnvironmentProblem(f"{self.path} is not a regular file")
            self._fd = fd
            yield self
        finally:
            self._fd = None
            os.close(fd)  # closing releases the lock

    def _open(self) -> int | None:
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                           | os.O_NOFOLLOW, SYSTEMD_LOG_MODE)
        except PermissionError as exc:
            if not self.path.exists():
                return None
            raise EnvironmentProblem(
                f"cannot open systemd's measurement log {self.path}: {exc.strerror}",
                hint="systemd's log is root's (mode 0600): run attest as root, or set "
                f"{SYSTEMD_LOG_ENV}=off and measure into a PCR systemd leaves alone "
                "(--pcr, ATTEST_RUNTIME_PCR)") from None
        except OSError as exc:
            raise EnvironmentProblem(f"cannot open systemd's measurement log {self.path}: "
                                     f"{exc.strerror or exc}",
                                     hint=f"{SYSTEMD_LOG_ENV} names it") from None

    def read(self) -> Sequence[CelRecord]:
        """systemd's records, read under its lock (or from no file: none); strict and bounded."""
        if self._fd is None:
            try:
                # Non-blocking and no link followed, a regular file only: a FIFO named by
                # ATTEST_SYSTEMD_LOG must not hang the read (as locked() opens it).
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
                             | os.O_CLOEXEC)
                try:
                    info = os.fstat(fd)
                    if not stat.S_ISREG(info.st_mode):
                        raise EnvironmentProblem(f"systemd's measurement log {self.path} is "
                                                 "not a regular file")
                    data = self._bounded(fd, info.st_size)
                    mode = info.st_mode
                finally:
                    os.close(fd)
            except FileNotFoundError:
                return ()
            except OSError as exc:
                raise EnvironmentProblem(f"cannot read systemd's measurement log {self.path}: "
                                         f"{exc.strerror or exc}") from None
        else:
            info = os.fstat(self._fd)
            data, mode = self._bounded(self._fd, info.st_size), info.st_mode
        if mode & stat.S_ISVTX:
            # systemd's mark of an append in progress, seen under its lock: a writer died.
            raise EventLogMismatch(f"systemd's measurement log {self.path} has its sticky bit "
                                   "set: a systemd append did not finish, so the log may "
                                   "lack an extend", hint="reboot to start a clean log")
        try:
            return parse_cel(data).records
        except EventLogError as exc:
            raise EventLogError(f"systemd's measurement log {self.path}: {exc}",
                                hint=exc.hint) from None

    def _bounded(self, fd: int, size: int) -> bytes:
        if size > MAX_LOG_BYTES:
            raise EventLogError(f"systemd's measurement log {self.path} is {size} bytes, over "
                                f"the {MAX_LOG_BYTES}-byte bound")
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)


def _same(a: CelRecord, b: CelRecord) -> bool:
    return (a.pcr == b.pcr and dict(a.digests) == dict(b.digests)
            and a.other_digests == b.other_digests and dict(a.content) == dict(b.content))


def unmirrored(ours: Sequence[CelRecord], theirs: Sequence[CelRecord],
               pcr: int) -> list[CelRecord] | None:
    """systemd's records for ``pcr`` that attest's log (``ours``) lacks, in order.

    ``ours`` holds, as its ``systemd`` records, a prefix of systemd's records for the
    PCR: the ones after it are returned. None when it is no prefix (attest's log is from
    an earlier boot, since systemd's log lives in /run, or either log was edited): the
    caller's reconciliation then decides. Any other content type that systemd's log puts
    on the PCR is refused: only systemd's own records are copied into attest's log.
    """
    shared = [r for r in theirs if r.pcr == pcr and r.extends]
    for record in shared:
        if record.content_type != SYSTEMD_CONTENT_TYPE:
            raise EventLogMismatch(
                f"systemd's measurement log holds a {record.content_type!r} record for PCR "
                f"{pcr} ({record.label}): attest copies only systemd's own records",
                hint="measure into a PCR that tool leaves alone (--pcr, ATTEST_RUNTIME_PCR)")
    copied = [r for r in ours if r.content_type == SYSTEMD_CONTENT_TYPE]
    if len(copied) > len(shared) or not all(map(_same, copied, shared)):
        return None
    return shared[len(copied):]
