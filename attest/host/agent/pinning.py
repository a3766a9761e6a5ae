"""Which process asked: a pidfd of the agent's client, pinned to the very process that
connected, for supervised runs (attest.host.agent.supervisor).

The thin client execs CMD in its own pid, so the process that asked is the process to
stop. A pid number alone names whoever holds it now: the client may have exited and its
pid been handed to another process (anyone's) between the request and the answer. So:

- SO_PEERPIDFD (Linux 6.5) gives a pidfd of the process that connected, taken by the
  kernel at connect: exact. On older kernels, pidfd_open(the SO_PEERCRED pid).
- Then, whichever way: the pidfd's process is still there, runs under the peer's uid
  (read from /proc, then the pidfd checked alive again, so the /proc entry read was that
  process's and not a successor's), and this agent may signal it (a signal 0 through
  the pidfd: the kernel's own permission check).

Anything else refuses supervision (exit 2) before anything is measured: the agent never
promises to supervise a process it could not stop, nor stops one that did not ask.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct

from attest.errors import UsageError
from attest.host.agent.supervisor import exited

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)  # Linux uapi; Python 3.11 lacks the name


def pinned_peer(conn: socket.socket) -> tuple[int, int]:
    """(pidfd, pid) of the process at the other end of ``conn``, checked as above; the
    pidfd is the caller's to close. UsageError when it cannot be pinned or signalled."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    try:
        pidfd = int(conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD))
    except OSError as exc:
        if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL):
            raise UsageError(f"--supervise: the asking process cannot be pinned: "
                             f"{exc.strerror}") from None
        try:  # an older kernel: the pid may name a successor, which the uid check catches
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise UsageError("--supervise: the asking process has exited") from None
    try:
        check_peer(pidfd, uid)
    except BaseException:
        os.close(pidfd)
        raise
    return pidfd, pidfd_pid(pidfd)


def check_peer(pidfd: int, uid: int) -> None:
    """UsageError unless the process behind ``pidfd`` is alive, of real uid ``uid``, and
    one this agent may signal."""
    me = os.geteuid()
    if me not in (0, uid):
        raise UsageError(f"--supervise: this agent (uid {me}) could not stop a process of "
                         f"uid {uid}; run the agent as root to supervise other users' runs")
    pid = pidfd_pid(pidfd)
    real = _real_uid(pid) if pid > 0 else None
    if real is None or exited(pidfd):
        raise UsageError("--supervise: the asking process has exited")
    if real != uid:
        raise UsageError(f"--supervise: the process at pid {pid} is not the one that asked")
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        raise UsageError("--supervise: the asking process has exited") from None
    except PermissionError:
        raise UsageError(f"--supervise: this agent (uid {me}) may not signal the process "
                         f"of uid {uid}") from None


def pidfd_pid(pidfd: int) -> int:
    """The pid the pidfd names, from its fdinfo; -1 once that process was reaped."""
    with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii") as info:
        for line in info:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise UsageError("--supervise: not a pidfd (no Pid in its fdinfo)")


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None
