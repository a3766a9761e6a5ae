"""Writing the home's files: atomically, and private ones with mode 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attest.durable import write_atomic
from attest.errors import UsageError


def write_public(path: Path, data: bytes) -> None:
    write_atomic(path, data, 0o644)


def write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, 0o600)


# Group and other bits: none of them on a folder holding the host's keys and log.
_SHARED_BITS = 0o077


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700): created so, or tightened.

    A home made by an older attest (or by hand) may be 0755, which exposes the
    runtime log and key records to every local user; tightening it is always
    safe for attest. A folder owned by someone else is refused, not chmod-ed.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_mode & _SHARED_BITS:
        # Narrow only a folder that is attest's (a misset --home of /var/lib, run as
        # root, must not lock the system out); a sticky one (/tmp) is shared on purpose.
        why = ("a shared folder" if info.st_mode & stat.S_ISVTX
               else "owned by someone else" if info.st_uid != os.geteuid()
               else None if _is_attests(path) else "not one attest made")
        if why is not None:
            raise UsageError(f"{path} is open to other users (mode "
                             f"{stat.S_IMODE(info.st_mode):04o}) and is {why}",
                             hint=f"use a folder of your own (--home), or chmod 700 {path}")
        path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
    return path


# Names only attest puts in its home and key folders.
_ATTEST_FILES = frozenset({"identity.json", "runtime.cel", "runtime.lock", "keys", "key.json"})


def _is_attests(path: Path) -> bool:
    """Empty, or holding a file only attest writes: a home or key folder of attest's."""
    with os.scandir(path) as entries:
        names = [entry.name for entry in entries]
    return not names or not _ATTEST_FILES.isdisjoint(names)
