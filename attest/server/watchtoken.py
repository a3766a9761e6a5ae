"""A host's watch token: the bearer credential for its own event feed, nothing else.

A token is ``base64url(version || expires_at || host || mac)``, unpadded:

- ``version`` one byte, :data:`VERSION`;
- ``expires_at`` 8 bytes, unsigned big-endian Unix seconds (exclusive);
- ``host`` the host id, UTF-8, 1..MAX_HOST characters (up to 4 bytes each);
- ``mac`` HMAC-SHA256, under the deployment's watch key, of :data:`_CONTEXT` and the
  bytes before it.

Why this shape: every replica on one database must check a token another replica minted,
on every reconnection of every agent, without a write (hundreds of hosts reconnecting
every few minutes). A MAC under a key the replicas share through their database
(attest.store.servicekeys, as the challenge key) costs no row per token and no read per
check. Its own key and context: neither a challenge nor anything a future key signs can
pass for a token. The host is inside the MAC, so a token opens one host's feed only; it
is no administrator's token (those are rows in admin_tokens, checked by
attest.server.admin, which never reads this format), so it opens no admin route.

It is opaque to hosts: they only carry it. Pure: no clock, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from attest.store.schema import MAX_HOST

VERSION = 1
KEY_BYTES = 32
MAC_BYTES = 32
TIME_BYTES = 8
_HEAD = 1 + TIME_BYTES
MAX_TOKEN_CHARS = ((_HEAD + MAX_HOST * 4 + MAC_BYTES) * 8 + 5) // 6
_CONTEXT = b"attest host watch token v1\x00"


@dataclass(frozen=True)
class WatchToken:
    """A token whose MAC checked out: the host whose feed it opens, until when."""

    host: str
    expires_at: int


def mint(key: bytes, host: str, expires_at: int) -> str:
    """The token opening ``host``'s feed until ``expires_at`` (Unix seconds), under ``key``."""
    # Characters, as the host ids of the store: 255 of them beyond ASCII are more bytes.
    name = host.encode("utf-8")
    if len(key) != KEY_BYTES or not 1 <= len(host) <= MAX_HOST:
        raise ValueError(f"a watch token needs a {KEY_BYTES}-byte key and a host of "
                         f"1..{MAX_HOST} characters")
    if not 0 < expires_at < 1 << (8 * TIME_BYTES):
        raise ValueError(f"a watch token's expiry is out of range: {expires_at}")
    body = bytes([VERSION]) + expires_at.to_bytes(TIME_BYTES, "big") + name
    return base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode("ascii")


def read(key: bytes, text: str) -> WatchToken | None:
    """What ``text`` is, if it is a token minted under ``key``; else None.

    Refused (None): too long, not ASCII, not the canonical base64url spelling (one token,
    one spelling), another version, a host that is empty or not UTF-8, a wrong MAC
    (compared in constant time). Expiry is the caller's to judge, on its clock.
    """
    if not text or len(text) > MAX_TOKEN_CHARS or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None  # characters the decoder dropped, or spare bits set
    if len(raw) <= _HEAD + MAC_BYTES or raw[0] != VERSION:
        return None
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(_mac(key, body), mac):
        return None
    try:
        host = body[_HEAD:].decode("utf-8")
    except UnicodeDecodeError:
        return None  # never minted so
    return WatchToken(host, int.from_bytes(body[1:_HEAD], "big"))


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + body, hashlib.sha256).digest()
