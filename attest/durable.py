"""Writing files so that a crash leaves the old one or the new one, and either lasts."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries: a file renamed or created in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``): written to a temporary file in
    the same folder, flushed to disk, then renamed over it. A crash leaves the old file
    or the new one, never half of one."""
    try:
        info = os.stat(path)
    except OSError:
        info = None  # not there yet (or not reachable: the write below says why)
    if info is not None and not stat.S_ISREG(info.st_mode):
        # Renaming over a device or a FIFO (/dev/zero, /dev/stdout's target) replaces the
        # node itself: run as root, `--out /dev/zero` would leave a regular file there.
        from attest.errors import UsageError

        raise UsageError(f"{path} is not a regular file (a device, a FIFO or a folder): "
                         "attest writes its outputs as files it replaces whole",
                         hint="name a file (then read it with cat)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a full disk fails write() with no name: give it one
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
