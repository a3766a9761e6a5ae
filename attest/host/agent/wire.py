"""The host agent's local protocol: one request and one answer a connection, each a
4-byte big-endian length and a JSON object, with at most one descriptor beside it
(SCM_RIGHTS). The thin `attest run` imports this and nothing of the rest of attest
(its start-up is the overhead that the agent exists to remove), so it takes no more of
the standard library than it must: the C parts of socket and json (``_socket``,
``_json``), not their Python modules, which pull in re, enum and collections (about
half of the client's start-up; scripts/bench_agent.py shows it).

Request ``{"op": "authorize", "argv": [...], "path": "/usr/bin/x", "keep_env":
{NAME: VALUE}, "subject": null | str, "key": str, "supervise": {"grace": SECONDS}
(optional: `attest run --supervise`)}`` with the descriptor the client opened on
``path``. Answer ``{"accepted": true, "jti": ..., "script": bool, "supervised": true
(when asked and registered)}`` with the sealed executable's descriptor, or
``{"accepted": false, "denials": [[reason, message], ...]}``, or ``{"error": message,
"exit": 2 | 3}``. Request ``{"op": "sign", ...}`` (`attest sign` through the agent):
attest.host.agent.signing.

JSON here is strict: no NaN or Infinity, no member named twice, nothing around the
object, and nesting bounded (MAX_DEPTH: a deep message is an error, not a crash).
"""

from __future__ import annotations

import _socket
import os
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import (mypy reads it so)
if TYPE_CHECKING:
    from typing import Any

MAX_MESSAGE_BYTES = 1 << 20  # an argv and a few kept variables; anything more is refused
MAX_DEPTH = 8  # a request nests three deep (supervise.grace); an answer's denials two
SOCKET_NAME = "agent.sock"
_HEADER_SIZE = 4
_FD_SIZE = 4  # a C int
_FD_SPACE = _socket.CMSG_SPACE(_FD_SIZE)


class WireError(Exception):
    """A message that is not one: too long, cut short, not a JSON object, or with more
    than one descriptor."""


def read_bounded(fd: int, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes from offset 0 of ``fd`` (pread: its offset untouched),
    whatever size it claims: one byte more than ``limit`` tells the caller it is over."""
    chunks: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = os.pread(fd, limit + 1 - got, got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def header(size: int) -> bytes:
    return size.to_bytes(_HEADER_SIZE, "big")


def send(sock: _socket.socket, message: dict[str, Any], fd: int | None = None) -> None:
    body = encode(message)
    if len(body) > MAX_MESSAGE_BYTES:
        raise WireError("message too long")
    data = header(len(body)) + body
    rights = [] if fd is None else [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                     fd.to_bytes(_FD_SIZE, sys.byteorder, signed=True))]
    sent = sock.sendmsg([data], rights)
    if sent < len(data):
        sock.sendall(data[sent:])


def receive(sock: _socket.socket, *, within: float | None = None
            ) -> tuple[dict[str, Any], int | None]:
    """One message and the descriptor that came with it (the caller's to close).
    Descriptors beyond the first, or that come with no message, are closed here.
    ``within``: seconds for the whole message (a socket timeout bounds each read only,
    so a peer sending a byte at a time would hold the reader for ever); TimeoutError."""
    deadline = None if within is None else time.monotonic() + within
    _time_left(sock, deadline)
    data, ancillary, flags, _ = sock.recvmsg(_HEADER_SIZE + MAX_MESSAGE_BYTES, _FD_SPACE)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.extend(int.from_bytes(payload[at:at + _FD_SIZE], sys.byteorder, signed=True)
                       for at in range(0, len(payload) - _FD_SIZE + 1, _FD_SIZE))
    try:
        if flags & _socket.MSG_CTRUNC or len(fds) > 1:
            raise WireError("more than one descriptor")
        while len(data) < _HEADER_SIZE or len(data) < _HEADER_SIZE + _size(data):
            if len(data) >= _HEADER_SIZE and _size(data) > MAX_MESSAGE_BYTES:
                raise WireError("message too long")
            _time_left(sock, deadline)
            more = sock.recv(_HEADER_SIZE + MAX_MESSAGE_BYTES - len(data))
            if not more:
                raise WireError("message cut short")
            data += more
        if len(data) != _HEADER_SIZE + _size(data):
            raise WireError("bytes after the message")
        message = decode(data[_HEADER_SIZE:])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, (fds[0] if fds else None)


def _size(data: bytes) -> int:
    return int.from_bytes(data[:_HEADER_SIZE], "big")


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as compact JSON, ASCII only (as json.dumps would write it)."""
    return "".join(_encoded(message, 0)).encode("ascii")


def _encoded(value: object, depth: int) -> list[str]:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deep")
    # bool before int: True is an int too.
    if value is None or isinstance(value, bool):
        return ["null" if value is None else "true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float) and _finite(value):
        return [repr(value)]
    if isinstance(value, str):
        return [_string(value)]
    if isinstance(value, list | tuple):
        items = [_encoded(item, depth + 1) for item in value]
        return ["[", ",".join("".join(item) for item in items), "]"]
    if isinstance(value, dict):
        members = []
        for name, item in value.items():
            if not isinstance(name, str):
                raise WireError("a member name that is not a string")
            members.append(_string(name) + ":" + "".join(_encoded(item, depth + 1)))
        return ["{", ",".join(members), "}"]
    raise WireError(f"{value!r} is not in the protocol")


def _finite(value: float) -> bool:
    return -float("inf") < value < float("inf")  # NaN is not either; without math's import


def _escape(char: str) -> str:
    point = ord(char)
    if point > 0xFFFF:  # a surrogate pair, as JSON writes characters beyond the BMP
        point -= 0x10000
        return f"\\u{0xD800 | point >> 10:04x}\\u{0xDC00 | point & 0x3FF:04x}"
    return {'"': '\\"', "\\": "\\\\"}.get(char, f"\\u{point:04x}")


def _string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # the common case, at C speed
    return '"' + "".join(c if " " <= c <= "~" and c not in '"\\' else _escape(c)
                         for c in text) + '"'


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object ``body`` holds, strictly; else WireError."""
    try:
        text = body.decode("utf-8")
        if not text.startswith("{"):
            raise WireError("not a JSON object")
        value, end = _scanner()(text, 0)
    except (ValueError, UnicodeDecodeError, StopIteration, RecursionError):
        raise WireError("not JSON") from None
    if end != len(text):
        raise WireError("not JSON: something after the object")
    if _depth(value) > MAX_DEPTH:
        raise WireError("message nested too deep")
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


def _depth(value: object) -> int:
    """How deep ``value`` nests (iteratively: a deep value does not exhaust the stack)."""
    deepest, level = 0, [value]
    while level:
        deepest += 1
        level = [item for found in level if isinstance(found, dict | list)
                 for item in (found.values() if isinstance(found, dict) else found)]
    return deepest - 1


class _Strict:
    """What the C scanner asks of its decoder (json.JSONDecoder's attributes), strict."""

    strict = True  # no control characters inside strings
    object_hook = None
    parse_int = int

    @staticmethod
    def parse_float(text: str) -> float:
        value = float(text)
        if not _finite(value):  # 1e999 reads as infinity
            raise ValueError(f"{text} is out of range")
        return value

    @staticmethod
    def object_pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) != len(pairs):
            raise ValueError("a member named twice")
        return found

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")


_SCAN: list[Any] = []


def _scanner() -> Any:
    """json's own C scanner (``_json.make_scanner``, what json.loads runs), without
    json's Python modules; json.loads's where there is no ``_json`` (not CPython)."""
    if not _SCAN:
        try:
            from _json import make_scanner

            # typeshed types the context as the scanner itself; it is any object with
            # JSONDecoder's attributes (json.decoder passes the decoder).
            _SCAN.append(make_scanner(_Strict()))  # type: ignore[arg-type]
        except ImportError:  # pragma: no cover - CPython has _json
            import json

            _SCAN.append(json.JSONDecoder(object_pairs_hook=_Strict.object_pairs_hook,
                                          parse_constant=_Strict.parse_constant).raw_decode)
    return _SCAN[0]


def _time_left(sock: _socket.socket, deadline: float | None) -> None:
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the message did not arrive in time")
    sock.settimeout(left)


def peer_credentials(sock: _socket.socket) -> tuple[int, int]:
    """The uid and gid of the process at the other end, from the kernel (SO_PEERCRED,
    taken at connect or listen), not from anything it says."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # 3 C ints
    uid = int.from_bytes(creds[4:8], sys.byteorder, signed=True)
    gid = int.from_bytes(creds[8:12], sys.byteorder, signed=True)
    return uid, gid


def peer_uid(sock: _socket.socket) -> int:
    return peer_credentials(sock)[0]
