"""Challenges that cost no write to issue: a nonce that carries its own expiry, under a MAC.

A challenge is ``base64url(version || random || issued_at || expires_at || mac)``:

- ``version`` one byte, :data:`VERSION`;
- ``random`` 16 bytes from the OS;
- ``issued_at`` and ``expires_at`` 5 bytes each, unsigned big-endian Unix seconds;
- ``mac`` the first 16 bytes of HMAC-SHA256, under the deployment's challenge key, of
  :data:`_CONTEXT` and the 27 bytes before it.

43 bytes, 58 characters unpadded: within the store's ``MAX_NONCE`` and the artifact's
``eat_nonce`` format (unpadded base64url). Issuing one reads no row and writes none:
the key is read once per process (:mod:`attest.store.servicekeys`), and every replica
sharing the database mints and checks with the same key. Single use is the database's
business, at acceptance: the consumed nonce is inserted, keyed by its text, in the
acceptance's transaction (attest.store.acceptance.consume_nonce).

Everything here is pure (no clock, no I/O): :func:`mint` takes its random bytes and
times, :func:`read` takes the text and the key, and says what the text is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

VERSION = 1
RANDOM_BYTES = 16
TIME_BYTES = 5
MAC_BYTES = 16
KEY_BYTES = 32
_BODY = 1 + RANDOM_BYTES + 2 * TIME_BYTES
TOKEN_BYTES = _BODY + MAC_BYTES
TOKEN_CHARS = (TOKEN_BYTES * 8 + 5) // 6  # unpadded base64url: 58
MAX_TIME = (1 << (8 * TIME_BYTES)) - 1
# The longest life a challenge may have: the service's ttl bound (attest.artifact.model's
# MAX_TTL_S, a week). A longer one is refused even under a good MAC: only a key holder
# could have made it, and a week is already far past any honest use.
MAX_LIFETIME_S = 7 * 24 * 3600
# The MAC's domain: a key used for anything else one day can't be made to vouch for this.
_CONTEXT = b"attest challenge v1\x00"


@dataclass(frozen=True)
class Challenge:
    """A nonce whose MAC checked out under this deployment's key: when it was issued and
    until when (exclusive) it is usable. ``text`` is its canonical spelling, the one
    single use is keyed by."""

    text: str
    issued_at: int
    expires_at: int


def mint(key: bytes, random: bytes, issued_at: int, expires_at: int) -> str:
    """The challenge text for ``random`` (RANDOM_BYTES from the OS), usable from
    ``issued_at`` until ``expires_at`` (Unix seconds), under ``key``."""
    if len(key) != KEY_BYTES or len(random) != RANDOM_BYTES:
        raise ValueError("a challenge needs a 32-byte key and 16 random bytes")
    if not 0 <= issued_at < expires_at <= min(MAX_TIME, issued_at + MAX_LIFETIME_S):
        raise ValueError(f"a challenge's times must satisfy 0 <= issued ({issued_at}) < "
                         f"expires ({expires_at}) <= issued + {MAX_LIFETIME_S}, <= {MAX_TIME}")
    body = (bytes([VERSION]) + random + issued_at.to_bytes(TIME_BYTES, "big")
            + expires_at.to_bytes(TIME_BYTES, "big"))
    return base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode("ascii")


def looks_minted(text: str) -> bool:
    """Whether ``text`` has a minted challenge's shape (length and version), MAC unchecked.

    What decides between a challenge and a nonce a store issued as a row before
    challenges existed (43 characters): the two never share a length.
    """
    return len(text) == TOKEN_CHARS and text[:1] == _FIRST_CHAR


def read(key: bytes, text: str) -> Challenge | None:
    """The challenge ``text`` spells, if its MAC is right under ``key``; else None.

    Refused (None): another length or version, characters outside base64url, a
    spelling that is not the canonical one (base64's spare low bits set: otherwise one
    challenge would have 16 spellings, each a first use), a wrong MAC (forged, altered,
    truncated, or minted under another deployment's key). The MAC is compared in
    constant time. Expiry is the caller's to judge, against its own clock.
    """
    if not looks_minted(text) or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    if len(raw) != TOKEN_BYTES or raw[0] != VERSION:
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None  # non-alphabet characters dropped by the decoder, or spare bits set
    body, mac = raw[:_BODY], raw[_BODY:]
    if not hmac.compare_digest(_mac(key, body), mac):
        return None
    at = 1 + RANDOM_BYTES
    issued = int.from_bytes(body[at:at + TIME_BYTES], "big")
    expires = int.from_bytes(body[at + TIME_BYTES:], "big")
    if not issued < expires <= issued + MAX_LIFETIME_S:
        return None  # never minted so: whoever made it holds the key and misuses it
    return Challenge(text, issued, expires)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + body, hashlib.sha256).digest()[:MAC_BYTES]


# The first character of every minted challenge: the top six bits of the version byte.
_FIRST_CHAR = base64.urlsafe_b64encode(bytes([VERSION, 0, 0]))[:1].decode("ascii")
