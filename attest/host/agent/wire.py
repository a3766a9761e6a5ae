"""The host agent's local protocol: one request and one answer a connection, each a
4-byte big-endian length and a JSON object, with at most one descriptor beside it
(SCM_RIGHTS). Standard library only: the thin `attest run` imports this and nothing
of the rest of attest (its start-up is the overhead that the agent exists to remove).

Request ``{"op": "authorize", "argv": [...], "path": "/usr/bin/x", "keep_env":
{NAME: VALUE}, "subject": null | str, "key": str, "supervise": {"grace": SECONDS}
(optional: `attest run --supervise`)}`` with the descriptor the client opened on
``path``. Answer ``{"accepted": true, "jti": ..., "script": bool, "supervised": true
(when asked and registered)}`` with the sealed executable's descriptor, or
``{"accepted": false, "denials": [[reason, message], ...]}``, or ``{"error": message,
"exit": 2 | 3}``.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
import time
from typing import Any

MAX_MESSAGE_BYTES = 1 << 20  # an argv and a few kept variables; anything more is refused
SOCKET_NAME = "agent.sock"
_HEADER = struct.Struct(">I")
_FD_SPACE = socket.CMSG_SPACE(array.array("i", [0]).itemsize)


class WireError(Exception):
    """A message that is not one: too long, cut short, not a JSON object, or with more
    than one descriptor."""


def send(sock: socket.socket, message: dict[str, Any], fd: int | None = None) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise WireError("message too long")
    data = _HEADER.pack(len(body)) + body
    rights = [] if fd is None else [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     array.array("i", [fd]).tobytes())]
    sent = sock.sendmsg([data], rights)
    if sent < len(data):
        sock.sendall(data[sent:])


def receive(sock: socket.socket, *, within: float | None = None
            ) -> tuple[dict[str, Any], int | None]:
    """One message and the descriptor that came with it (the caller's to close).
    Descriptors beyond the first, or that come with no message, are closed here.
    ``within``: seconds for the whole message (a socket timeout bounds each read only,
    so a peer sending a byte at a time would hold the reader for ever); TimeoutError."""
    deadline = None if within is None else time.monotonic() + within
    _time_left(sock, deadline)
    data, ancillary, flags, _ = sock.recvmsg(_HEADER.size + MAX_MESSAGE_BYTES, _FD_SPACE)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % array.array("i").itemsize
            fds.extend(array.array("i", payload[:usable]))
    try:
        if flags & socket.MSG_CTRUNC or len(fds) > 1:
            raise WireError("more than one descriptor")
        while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack(
                data[:_HEADER.size])[0]:
            if len(data) >= _HEADER.size and _HEADER.unpack(
                    data[:_HEADER.size])[0] > MAX_MESSAGE_BYTES:
                raise WireError("message too long")
            _time_left(sock, deadline)
            more = sock.recv(_HEADER.size + MAX_MESSAGE_BYTES - len(data))
            if not more:
                raise WireError("message cut short")
            data += more
        (size,) = _HEADER.unpack(data[:_HEADER.size])
        if len(data) != _HEADER.size + size:
            raise WireError("bytes after the message")
        try:
            message = json.loads(data[_HEADER.size:])
        except (ValueError, UnicodeDecodeError):
            raise WireError("not JSON") from None
        if not isinstance(message, dict):
            raise WireError("not a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, (fds[0] if fds else None)


def _time_left(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the message did not arrive in time")
    sock.settimeout(left)


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The uid and gid of the process at the other end, from the kernel (SO_PEERCRED,
    taken at connect or listen), not from anything it says."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, gid = struct.unpack("3i", creds)
    return int(uid), int(gid)


def peer_uid(sock: socket.socket) -> int:
    return peer_credentials(sock)[0]
