"""Reading a file someone else named: never more than a bound, never waiting forever.

A FIFO, a device (/dev/zero) or a file that keeps growing has no end, so a reader
that takes "the whole file" takes all the memory there is; a FIFO nobody writes to
blocks open() itself. Every file attest reads from a path it was given (artifacts,
policies, certificates, logs, keys, approvals) goes through :func:`read_at_most`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attest.reasons import Reason

# Per-kind bounds, each far above any honest input of its kind.
MAX_POLICY_BYTES = 1 << 20
MAX_KEY_BYTES = 64 << 10  # a PEM public key or certificate
MAX_CERT_BYTES = 1 << 20  # a PEM bundle of roots (the same bound as ekcert's)
MAX_LOG_BYTES = 64 << 20  # a measurement log (a boot log is a few hundred KiB)


def read_at_most(path: str | Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path``: the whole file, or a prefix that shows the
    file is larger than ``limit``. Raises OSError as open() and read() do."""
    # O_NONBLOCK: opening a FIFO without a writer returns at once (then reads end at
    # once) instead of waiting for a writer that may never come.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    with open(fd, "rb", closefd=True) as file:
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = file.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def read_prefix(path: str | Path, what: str, limit: int) -> bytes:
    """:func:`read_at_most` for a path someone named, its OSError said by the exit-code
    rule (attest.errors.os_error_exit_code): not there or not a file is UsageError (exit
    2), an I/O error EnvironmentProblem (exit 3)."""
    from attest.errors import EXIT_USAGE, EnvironmentProblem, UsageError, os_error_exit_code

    try:
        return read_at_most(path, limit)
    except OSError as exc:
        error = UsageError if os_error_exit_code(exc) == EXIT_USAGE else EnvironmentProblem
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None


def read_bounded(path: str | Path, what: str, limit: int,
                 evidence: Reason | None = None) -> bytes:
    """The bytes of ``path`` (:func:`read_prefix`'s errors). More than ``limit`` is
    MalformedInput (exit 2), or, for ``evidence`` (a file whose content is judged),
    MalformedEvidence with that reason (exit 1): no such evidence is that large."""
    from attest.errors import MalformedEvidence, MalformedInput

    data = read_prefix(path, what, limit)
    if len(data) > limit:
        message = f"{what} {path} holds more than {limit} bytes: not one"
        if evidence is not None:
            raise MalformedEvidence(message, reason=evidence)
        raise MalformedInput(message)
    return data


# A record attest writes in a home (identity.json, a key's key.json, the runtime log's
# epoch): a few KiB; the bound only stops a file replaced by a device or a FIFO.
MAX_RECORD_BYTES = 1 << 20


def read_home_file(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of a file attest keeps (in a home or a key folder), bounded like any
    other: a file replaced by /dev/zero or a FIFO neither hangs nor exhausts memory.
    OSError propagates (FileNotFoundError is "not yet" to most callers); anything but a
    regular file, or more than ``limit``, is MalformedInput (exit 2) naming the file."""
    from attest.errors import MalformedInput

    # attest writes regular files only: a device or a FIFO there was put by someone else
    # (and would parse as an empty or a garbage record, naming nothing).
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise MalformedInput(f"{what} {path} is not a regular file: not one attest wrote",
                             hint="restore it, or remove it and recreate it")
    data = read_at_most(path, limit)
    if len(data) > limit:
        raise MalformedInput(f"{what} {path} holds more than {limit} bytes: not one attest "
                             "wrote", hint="restore it, or remove it and recreate it")
    return data
