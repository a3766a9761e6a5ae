"""A writer of systemd's userspace measurement log, in systemd's shape and by its rules.

What systemd's tpm2_extend_bytes does, written for the tests: open the log
``O_WRONLY|O_APPEND|O_CREAT`` mode 0600, ``flock(LOCK_EX)``, extend the PCR in every
active bank with the hash of the word, then, with the sticky bit set while writing,
append one compact JSON record framed RS ... LF, fsync, clear the bit, unlock. The
record: ``{"pcr", "digests": [{"hashAlg", "digest"}], "content_type": "systemd",
"content": {"string", "bootId", "timestamp", "eventType"}}`` (no recnum).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attest.tpm.device import open_tpm
from attest.tpm.pcr import active_banks, extend

BOOT_ID = "5c3e7a9f0b1d4e6a8c2f4b6d8e0a1c3e"


def record_bytes(pcr: int, word: str, event_type: str, banks: list[str],
                 timestamp: int = 4_200_000) -> bytes:
    item = {"pcr": pcr,
            "digests": [{"hashAlg": bank, "digest": hashlib.new(bank, word.encode()).hexdigest()}
                        for bank in banks],
            "content_type": "systemd",
            "content": {"string": word, "bootId": BOOT_ID, "timestamp": timestamp,
                        "eventType": event_type}}
    return b"\x1e" + json.dumps(item, separators=(",", ":")).encode() + b"\n"


@contextmanager
def systemd_lock(log: Path) -> Iterator[int]:
    """systemd's lock on its log, as systemd takes it; yields the open descriptor."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def extend_and_log(fd: int, tcti: str, pcr: int, word: str, event_type: str) -> bytes:
    """With the lock held on ``fd``: extend, then log; returns the record's bytes."""
    with open_tpm(tcti) as tpm:
        banks = active_banks(tpm)
        extend(tpm, pcr, {bank: hashlib.new(bank, word.encode()).digest() for bank in banks})
    data = record_bytes(pcr, word, event_type, banks)
    mode = os.fstat(fd).st_mode & 0o7777
    os.fchmod(fd, mode | 0o1000)
    os.write(fd, data)
    os.fsync(fd)
    os.fchmod(fd, mode & ~0o1000)
    return data


def systemd_measure(log: Path, tcti: str, pcr: int, word: str, event_type: str) -> bytes:
    """One systemd measurement: lock, extend, log, unlock."""
    with systemd_lock(log) as fd:
        return extend_and_log(fd, tcti, pcr, word, event_type)
