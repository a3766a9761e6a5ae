"""Where the runtime log stood after the last measurement, so that reconcile need not read it.

The log grows for the whole boot; reading and replaying all of it on every
measurement made `attest run` cost O(records since boot). After each append and
extend, under the log's lock, the home keeps ``runtime.checkpoint``: the boot epoch,
the record count and byte length of the log at that point, the PCR's value in each
bank after those records, the prefix digest (attest.eventlog.prefix) and a digest of
the last record's bytes, and a small ring of recent (count, offset, prefix digest)
marks from which an artifact's ``runtime_log_base`` is found without reading the log.

The checkpoint is a performance hint of the host, never a security boundary: the
verifier appraises everything again, and ``attest eventlog check`` always replays
the whole log. Reconcile trusts it only while the log file is exactly as the last
append left it (inode, length, ctime and mtime, and the last record's bytes at its
offset) and the TPM holds the values it names; anything else (missing, unreadable,
another epoch or PCR, a file written since, a PCR that moved) sends reconcile back
to the full read, which repairs or reports as before and writes a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest import strictjson
from attest.tpm.files import write_private

CHECKPOINT_NAME = "runtime.checkpoint"
# Recent marks kept: an acknowledged prefix older than these is found by the full read.
RING = 32
MAX_CHECKPOINT_BYTES = 1 << 16
_MAX_BANKS = 8


@dataclass(frozen=True)
class Mark:
    """The log's first ``count`` records are its first ``offset`` bytes, with ``digest``."""

    count: int
    offset: int
    digest: bytes


@dataclass(frozen=True)
class Checkpoint:
    epoch: tuple[int, int]
    pcr: int
    count: int
    next_recnum: int
    offset: int  # byte length of the log after ``count`` records
    values: dict[str, bytes]  # the PCR in each active bank after them
    prefix: bytes  # their prefix digest
    last: bytes  # SHA-256 of the last record's bytes (the boundary check)
    last_len: int
    marks: tuple[Mark, ...]
    # The log file as the last append left it: (inode, ctime_ns, mtime_ns). Any write
    # since, by anyone, changes the ctime (the kernel sets it; no user call can).
    file: tuple[int, int, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": list(self.epoch), "pcr": self.pcr, "count": self.count,
            "next_recnum": self.next_recnum, "offset": self.offset,
            "values": {bank: value.hex() for bank, value in sorted(self.values.items())},
            "prefix": self.prefix.hex(), "last": self.last.hex(), "last_len": self.last_len,
            "marks": [[m.count, m.offset, m.digest.hex()] for m in self.marks],
            "file": list(self.file),
        }

    def mark(self, count: int, digest: bytes) -> Mark | None:
        """The mark for a prefix of ``count`` records with ``digest``, if kept."""
        return next((m for m in self.marks if m.count == count and m.digest == digest), None)


def _int(value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"not an integer >= {low}: {value!r}")
    return value


def _digest(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError("not a SHA-256 digest in hex")
    return bytes.fromhex(value)


def _parsed(data: Any) -> Checkpoint:
    epoch = data["epoch"]
    if not isinstance(epoch, list) or len(epoch) != 2:
        raise ValueError("epoch")
    values = data["values"]
    if not isinstance(values, dict) or not 0 < len(values) <= _MAX_BANKS:
        raise ValueError("values")
    file = data["file"]
    if not isinstance(file, list) or len(file) != 3:
        raise ValueError("file")
    marks = data["marks"]
    if not isinstance(marks, list) or len(marks) > RING:
        raise ValueError("marks")
    checkpoint = Checkpoint(
        epoch=(_int(epoch[0]), _int(epoch[1])), pcr=_int(data["pcr"]),
        count=_int(data["count"], 1), next_recnum=_int(data["next_recnum"]),
        offset=_int(data["offset"], 1),
        values={str(bank): bytes.fromhex(value) for bank, value in values.items()
                if isinstance(value, str)},
        prefix=_digest(data["prefix"]), last=_digest(data["last"]),
        last_len=_int(data["last_len"], 1),
        marks=tuple(Mark(_int(m[0], 1), _int(m[1], 1), _digest(m[2])) for m in marks
                    if isinstance(m, list) and len(m) == 3),
        file=(_int(file[0]), _int(file[1]), _int(file[2])))
    if len(checkpoint.values) != len(values) or checkpoint.last_len > checkpoint.offset:
        raise ValueError("values or boundary")
    return checkpoint


def load(home: Path) -> Checkpoint | None:
    """The home's checkpoint, or None when there is none or it cannot be read: a hint
    lost only costs one full read."""
    path = home / CHECKPOINT_NAME
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CHECKPOINT_BYTES + 1)
        if len(data) > MAX_CHECKPOINT_BYTES:
            return None
        return _parsed(strictjson.loads(data))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def save(home: Path, checkpoint: Checkpoint) -> None:
    write_private(home / CHECKPOINT_NAME, json.dumps(checkpoint.to_json()).encode())


def forget(home: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(home / CHECKPOINT_NAME)


def file_identity(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_ino, info.st_ctime_ns, info.st_mtime_ns


def boundary_digest(record: bytes) -> bytes:
    return hashlib.sha256(record).digest()
