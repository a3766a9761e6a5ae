"""``last-head``: the last tree head the log key signed, recorded beside the key.

Why it exists is in :mod:`attest.audit.keys` and docs/audit.md: a head is signed only
over a tree consistent with it, so whoever can write the database cannot have the key
sign a fork after truncating the log. This module is how it is kept, cheaply: the
service signs a head with every commit, and recording it used to cost a temporary file,
two fsyncs, a rename and three Ed25519 verifications per commit (about 40 % of a lone
report's time).

The file: two slots of :data:`SLOT` bytes, each a header line ``attest-last-head 1 <seq>
<length> <sha256>`` then the signed note and zero padding; the sha256 covers the
sequence number and the note. The newest slot (highest sequence) whose checksum holds is
the last head; its note must still verify with the log key (else the folder was
tampered with, and nothing is signed). A file that does not start with the header is
the older format, one whole note, read as such and replaced by slots at the next record.

Why a crash leaves the old head or the new one, and the new one lasts once recorded:

- The file is created (or replaced, from the older format or a note that does not
  verify) whole: a temporary file, fsync, rename, fsync of the folder. It is never half
  there, and its 2 * SLOT bytes are allocated then, not sparse.
- An update overwrites, in place, only the slot that does not hold the newest head, then
  fdatasync. The newest slot is not touched, and it is on disk: its own fdatasync
  returned before this write began (in this process; another one's returned before it
  released the lock this one holds). A crash mid-write tears at most the slot being
  written: its checksum fails and the reader takes the other, the old head. When
  fdatasync returns the new slot is on disk; its file's size and blocks did not change,
  so there is no metadata for a later crash to lose (fdatasync skips only the times).
- Both slots failing their checksum therefore cannot come from a crash: it is a
  damaged or tampered file, and it is refused as a note that does not verify is.

What is not done per commit any more, and why that keeps the guarantees:

- The note this process just signed is not verified again: it knows its size and root.
- A slot read is verified only when it differs from the one this process last wrote or
  verified (same sequence and same note bytes): the comparison is on the content read
  now, under the lock for a record, so another process's record is always seen. (The
  file's identity would not do: an in-place write keeps the inode and size, and its
  mtime moves by the kernel's clock tick, milliseconds, during which another write can
  land unseen.) A file changed by anyone gets its note verified again.
- Records still hold the exclusive lock on ``last-head.lock`` around the read, the
  comparison and the write: a smaller head never replaces a larger one, whatever the
  order in which several processes on one key folder get there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from attest.audit.note import Checkpoint, VerifierKey
from attest.durable import fsync_dir, write_atomic
from attest.errors import AuditUnavailable, ProofError, UsageError

FILE = "last-head"
LOCK = "last-head.lock"  # held while the last head is compared and replaced
SLOT = 8192  # bytes: a note names its log twice, and a name is under 4 KiB (the key file)
MAGIC = b"attest-last-head 1 "
_HEADER = re.compile(rb"attest-last-head 1 ([1-9][0-9]{0,19}) ([1-9][0-9]{0,4}) ([0-9a-f]{64})\n")
LEGACY_MAX = 64 * 1024  # the older format: one note, at most this long


@dataclass(frozen=True)
class Slot:
    index: int  # 0 or 1: where in the file
    seq: int
    note: bytes


def encode_slot(seq: int, note: bytes) -> bytes:
    """One slot's bytes (ValueError when the note does not fit)."""
    header = b"%s%d %d %s\n" % (MAGIC, seq, len(note), _checksum(seq, note).encode())
    if len(header) + len(note) > SLOT:
        raise ValueError(f"a signed head of {len(note)} bytes does not fit a slot of {SLOT}")
    return (header + note).ljust(SLOT, b"\0")


def newest(data: bytes) -> Slot | None:
    """The newest slot of ``data`` (a slot file's bytes) whose checksum holds, or None."""
    found = [s for s in (read_slot(data, i) for i in (0, 1)) if s is not None]
    return max(found, key=lambda s: s.seq, default=None)


def is_slots(data: bytes) -> bool:
    return data.startswith(MAGIC)


class LastHead:
    """The record of ``folder/last-head`` for one process, shared by its threads (each
    call does its own I/O; the lock is taken for records, and what is remembered is only
    the last slot seen, with its verified head)."""

    def __init__(self, folder: Path, key: VerifierKey | None) -> None:
        self.folder = folder
        self.key = key
        self._seen: tuple[int, bytes, Checkpoint] | None = None  # (seq, note, its head)

    @property
    def path(self) -> Path:
        return self.folder / FILE

    def current(self) -> Checkpoint | None:
        """The last head recorded, verified with the key (once per slot content), or
        None before the first. AuditUnavailable when it does not verify: tampered."""
        data = self._read()
        if data is None:
            return None
        return self._open(data)

    def note(self) -> str | None:
        """The note of the last head recorded, unchecked (an auditor checks it with the
        verifier key where it is used), or None before the first."""
        data = self._read(owner_only=False)
        if data is None:
            return None
        if not is_slots(data):
            return data.decode("utf-8", errors="replace")
        slot = newest(data)
        if slot is None:
            raise UsageError(f"the last signed head in {self.path} is damaged: neither of "
                             "its slots holds a whole head", hint="the key folder was "
                             "tampered with: restore it, or pass --trusted-head")
        return slot.note.decode("utf-8", errors="replace")

    def record(self, note: str, head: Checkpoint | None = None) -> None:
        """Record ``note``, durably, unless a head at least as large is recorded already.

        ``head`` is the note's checkpoint when the caller signed it itself (not verified
        again); without it the note is verified with the key. Without a key at all, the
        note replaces whatever is there (no comparison possible)."""
        raw = note.encode()
        if head is None and self.key is not None:
            head = self.key.open(note)  # ProofError: not a head of this key
        lock = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            recorded = newest(data) if data is not None and is_slots(data) else None
            # A recorded head that does not verify (or a damaged file) is replaced
            # whole, as it always was: it protects nothing.
            size = -1
            if self.key is not None and recorded is not None:
                size = self._size(recorded)
            elif self.key is not None and data is not None and not is_slots(data):
                size = self._legacy_size(data)
            if head is not None and size >= head.size:
                return  # a larger head is recorded (another process got there first)
            if recorded is None or (size < 0 and self.key is not None):
                seq = self._replace(raw)
            else:
                seq = self._overwrite(1 - recorded.index, recorded.seq + 1, raw)
            if head is not None:
                self._seen = (seq, raw, head)
        finally:
            os.close(lock)  # releases the lock

    # -- reading -------------------------------------------------------------------------

    def _open(self, data: bytes) -> Checkpoint:
        """The verified head of ``data``; AuditUnavailable when there is none."""
        if not is_slots(data):
            return self._verify(data)  # the older format: one note
        slot = newest(data)
        if slot is None:
            raise AuditUnavailable(f"the last signed head in {self.path} is damaged: "
                                   "neither of its slots holds a whole head",
                                   hint="the key folder was tampered with: restore it")
        seen = self._seen
        if seen is not None and seen[0] == slot.seq and seen[1] == slot.note:
            return seen[2]
        head = self._verify(slot.note)
        self._seen = (slot.seq, slot.note, head)
        return head

    def _size(self, slot: Slot) -> int:
        """The size of ``slot``'s head, or -1 when it does not verify with the key."""
        seen = self._seen
        if seen is not None and seen[0] == slot.seq and seen[1] == slot.note:
            return seen[2].size
        try:
            head = self._verify(slot.note)
        except AuditUnavailable:
            return -1
        self._seen = (slot.seq, slot.note, head)
        return head.size

    def _legacy_size(self, data: bytes) -> int:
        try:
            return self._verify(data).size
        except AuditUnavailable:
            return -1

    def _verify(self, note: bytes) -> Checkpoint:
        if self.key is None:
            raise AuditUnavailable("the last signed head cannot be checked without the key")
        try:
            return self.key.open(note.decode("utf-8", errors="replace"))
        except ProofError as exc:
            raise AuditUnavailable(f"the last signed head in {self.path} does not verify "
                                   f"with the log key: {exc.message}",
                                   hint="the key folder was tampered with: restore it") from None

    def _read(self, *, owner_only: bool = True) -> bytes | None:
        """The file's bytes, or None when it does not exist. ``owner_only``: refused
        unless this user owns it and others cannot read it (the verifier's own read)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            info = os.fstat(fd)  # the file opened, not the name: it may be replaced since
            if owner_only:
                _check_private(self.path, info)
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{self.path} is not a regular file")
            data = os.pread(fd, max(2 * SLOT, LEGACY_MAX) + 1, 0)
        finally:
            os.close(fd)
        if len(data) > max(2 * SLOT, LEGACY_MAX):
            raise UsageError(f"{self.path} is larger than {max(2 * SLOT, LEGACY_MAX)} bytes")
        return data

    # -- writing -------------------------------------------------------------------------

    def _replace(self, note: bytes) -> int:
        """The file written whole, slot 0 holding ``note`` (sequence 1): a new file, or one
        of the older format or not verifying. Temporary file, fsync, rename, folder fsync."""
        write_atomic(self.path, encode_slot(1, note) + bytes(SLOT), 0o600)
        fsync_dir(self.folder)
        return 1

    def _overwrite(self, index: int, seq: int, note: bytes) -> int:
        """Slot ``index`` (not the newest) overwritten in place, then fdatasync."""
        data = encode_slot(seq, note)
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            _check_private(self.path, os.fstat(fd))
            if os.pwrite(fd, data, index * SLOT) != len(data):
                raise OSError(f"a short write to {self.path}")
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return seq


def read_slot(data: bytes, index: int) -> Slot | None:
    """Slot ``index`` of ``data`` when whole (its checksum holds), else None."""
    chunk = data[index * SLOT:(index + 1) * SLOT]
    match = _HEADER.match(chunk)
    if match is None:
        return None
    seq, length = int(match[1]), int(match[2])
    note = chunk[match.end():match.end() + length]
    if len(note) != length or _checksum(seq, note) != match[3].decode():
        return None
    return Slot(index, seq, note)


def _checksum(seq: int, note: bytes) -> str:
    return hashlib.sha256(b"%d\n" % seq + note).hexdigest()


def _check_private(path: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise UsageError(f"the file {path} belongs to uid {info.st_uid}, not to this user",
                         hint="the verifier's user must own its log key")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"the file {path} is open to others (mode {info.st_mode & 0o777:o})",
                         hint=f"chmod 600 {path}")
