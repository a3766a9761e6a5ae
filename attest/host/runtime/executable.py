"""The executable `attest run` measures is the one it runs: a sealed copy, hashed and exec'd.

Hashing a path and then exec'ing the path leaves a gap in which the path (or the
file's bytes, for anyone who may write it) can change: the artifact, the runtime
log and the audit log would name the approved digest while something else ran.
So the file is opened once, copied into a memfd that is then sealed against any
write, shrink or growth, hashed from that memfd, and the very same memfd is
exec'd (fexecve). Nothing after the seal can change what runs.

A root-owned set-user-ID, set-group-ID or file-capability executable that only
root may write is hashed and exec'd from the descriptor opened on it instead: a
memfd copy would run without the privileges it is for (see :func:`_privileged`).

A script (``#!``) runs the same way: the kernel hands the interpreter
``/dev/fd/N``, so that one descriptor stays open across the exec. The
interpreter named on the ``#!`` line is measured by name only (its path is in
the hashed bytes); measure it separately to appraise its contents.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from attest import progress
from attest.errors import EnvironmentProblem, UsageError
from attest.host.runtime.subjects import resolve_executable

# A sealed copy lives in memory until the exec: refuse what no command should be.
MAX_EXECUTABLE_BYTES = 1 << 30
_CHUNK = 1 << 20
# linux/memfd.h; Python does not name it yet.
_MFD_EXEC = 0x0010
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


@dataclass(frozen=True)
class SealedExecutable:
    """An executable's bytes in a sealed memfd, their digests, and where they came from."""

    path: Path  # the resolved file the bytes were read from (for people and the log)
    fd: int  # the sealed memfd: what is hashed and what runs
    digests: Mapping[str, bytes]
    script: bool  # starts with "#!": the interpreter opens /dev/fd/N itself

    def exec(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        """Replace this process with the sealed bytes (fexecve); never returns."""
        if self.script:
            # The kernel runs the interpreter on /dev/fd/N: that fd must survive the exec.
            os.set_inheritable(self.fd, True)
        os.execve(self.fd, list(argv), dict(env))  # noqa: S606 - the accepted command itself
        raise AssertionError("unreachable: execve returned")  # pragma: no cover

    def close(self) -> None:
        os.close(self.fd)


def seal_executable(program: str, banks: Sequence[str]) -> SealedExecutable:
    """Resolve ``program`` (a path, or a name in PATH), copy it into a sealed memfd, hash it."""
    path = resolve_executable(program)
    try:
        source = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None
    return seal_opened(path, source, banks)


def seal_opened(path: Path, source: int, banks: Sequence[str]) -> SealedExecutable:
    """:func:`seal_executable` from a descriptor already opened on ``path`` (the host
    agent gets it from its client, who opened it with the client's own rights). Takes
    ``source``: it is closed, or kept as the executable when privileged."""
    try:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"not a regular file: {path}")
        if info.st_size > MAX_EXECUTABLE_BYTES:
            raise UsageError(f"{path} is {info.st_size} bytes; attest run seals at most "
                             f"{MAX_EXECUTABLE_BYTES} bytes")
        if _privileged(source, info):
            digests, head = _hash(source, banks, path)
            if not head.startswith(b"#!"):  # the kernel ignores the bits on scripts
                kept, source = source, -1
                return SealedExecutable(path, kept, digests, False)
        try:
            sealed = _executable_memfd(f"attest-run:{path.name}")
        except OSError as exc:
            raise EnvironmentProblem(f"cannot make a sealed copy of {path}: {exc.strerror}",
                                     hint="attest run needs memfd_create (Linux 3.17+)") from None
        try:
            _copy(source, sealed, path)
            fcntl.fcntl(sealed, fcntl.F_ADD_SEALS, _SEALS)
            digests, head = _hash(sealed, banks, path)
        except BaseException:
            os.close(sealed)
            raise
    finally:
        if source >= 0:
            os.close(source)
    return SealedExecutable(path, sealed, digests, head.startswith(b"#!"))


def _privileged(fd: int, info: os.stat_result) -> bool:
    """Whether the opened file is exec'd for the privileges it carries, from the very
    descriptor that was hashed rather than from a sealed copy.

    A copy in a memfd loses what the kernel grants at exec from the file itself: the
    set-user-ID and set-group-ID bits and file capabilities (``sudo``, ``passwd``,
    ``ping``). Such a file owned by root and writable by no group or other user can
    change between the hash and the exec only by root; a rename over its path changes
    nothing, since the descriptor is what runs. Any other file is copied and sealed.

    On a nosuid mount the kernel grants nothing at exec, and the file system may be
    one a user serves (FUSE mounts of users are always nosuid), whose bytes at exec
    need not be the bytes hashed: such a file is copied too.
    """
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    if os.fstatvfs(fd).f_flag & os.ST_NOSUID:
        return False
    if info.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return True
    try:
        os.getxattr(fd, "security.capability")
    except OSError:
        return False  # no file capabilities (ENODATA), or no xattrs here at all
    return True


def _executable_memfd(name: str) -> int:
    """A sealable memfd that may be exec'd: asked for explicitly (MFD_EXEC) where the
    kernel knows the flag (6.3+, whose vm.memfd_noexec may otherwise default to noexec)."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        return os.memfd_create(name, flags | _MFD_EXEC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    return os.memfd_create(name, flags)  # a kernel older than MFD_EXEC: memfds are executable


def _copy(source: int, target: int, path: Path) -> None:
    total = 0
    while chunk := os.read(source, _CHUNK):
        total += len(chunk)
        if total > MAX_EXECUTABLE_BYTES:
            raise UsageError(f"{path} grew past {MAX_EXECUTABLE_BYTES} bytes while read")
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view):]


def _hash(fd: int, banks: Sequence[str], path: Path) -> tuple[dict[str, bytes], bytes]:
    """Digests of the sealed bytes, read back from the memfd itself, and their first bytes."""
    hashers = {bank: hashlib.new(bank) for bank in banks}
    offset = 0
    head = b""
    with progress.task(f"hashing {path}", os.fstat(fd).st_size) as task:
        while chunk := os.pread(fd, _CHUNK, offset):
            if offset == 0:
                head = chunk[:2]
            offset += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
            task.advance(len(chunk))
    return {bank: hasher.digest() for bank, hasher in hashers.items()}, head
