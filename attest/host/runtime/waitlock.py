"""An exclusive flock taken within a deadline: attest's runtime-log lock and systemd's
measurement-log lock are both waited for this way (attest.host.runtime.log,
attest.host.runtime.systemd_log)."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable

POLL_S = 0.005


def flock_within(fd: int, timeout: float, busy: Callable[[], Exception]) -> None:
    """LOCK_EX on ``fd``, retried until ``timeout`` seconds have passed; then raise
    ``busy()``. Polled rather than blocking so that the wait is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise busy() from None
            time.sleep(POLL_S)
