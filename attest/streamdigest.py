"""Digests of a stream of any size, read once in chunks, its progress counted.

Every command that names a file by its digest (`attest sign`, `attest key sign`,
`attest measure`, `attest verify-signature`) reads it here: constant memory whatever
the size, one pass for several banks, and a progress task (attest.progress) a
terminal can show while a large file hashes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from typing import BinaryIO

from attest import progress

CHUNK = 1 << 20


def _size(stream: BinaryIO) -> int | None:
    """A regular file's size, for the percentage; None for a pipe or a device."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (an in-memory stream)
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def stream_digests(stream: BinaryIO, banks: Sequence[str], label: str
                   ) -> tuple[dict[str, bytes], int]:
    """Each bank's digest of the rest of ``stream``, and how many bytes that was."""
    hashers = {bank: hashlib.new(bank) for bank in banks}
    size = 0
    with progress.task(label, _size(stream)) as task:
        while chunk := stream.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
            size += len(chunk)
            task.advance(len(chunk))
    return {bank: hasher.digest() for bank, hasher in hashers.items()}, size
