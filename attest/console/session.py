"""Console sessions: an admin token, checked once at login, becomes a cookie.

The cookie is ``<token id>.<expiry>.<mac>``: the MAC (HMAC-SHA256 under a key of the
console's own, derived from the deployment's challenge key so every replica and worker
accepts it) binds the token's public id to the expiry. It holds no secret: stolen, it
is a session until it expires or its token is revoked (the routes check the token is
still in force on every request), never the token itself.

Pure functions of their arguments (keys and times are passed in): tested by vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import re

COOKIE = "attest_console"
SESSION_S = 8 * 3600
# Domain separation: the challenge key MACs nonces; this label makes a key that MACs
# nothing else, so no session value is ever a valid challenge and no challenge a session.
LABEL = b"attest console session v1"
_CSRF = b"csrf|"
# 16 hex (the token id), up to 12 digits (an expiry in seconds), 64 hex (the MAC).
_SHAPE = re.compile(r"([0-9a-f]{16})\.([1-9][0-9]{0,11})\.([0-9a-f]{64})")
MAX_COOKIE = 16 + 1 + 12 + 1 + 64


def session_key(challenge_key: bytes) -> bytes:
    """The console's MAC key, derived from the deployment's challenge key."""
    if len(challenge_key) < 16:
        raise ValueError("the challenge key is too short to derive a session key from")
    return hmac.new(challenge_key, LABEL, hashlib.sha256).digest()


def _mac(key: bytes, token_id: str, expires: int) -> str:
    return hmac.new(key, f"{token_id}.{expires}".encode("ascii"), hashlib.sha256).hexdigest()


def issue(key: bytes, token_id: str, now: int) -> str:
    """A cookie value for the token ``token_id`` (16 hex digits), valid for SESSION_S."""
    if re.fullmatch(r"[0-9a-f]{16}", token_id) is None:
        raise ValueError("a token id is 16 lowercase hex digits")
    expires = now + SESSION_S
    return f"{token_id}.{expires}.{_mac(key, token_id, expires)}"


def token_id(key: bytes, cookie: str | None, now: int) -> str | None:
    """The token id a session cookie names when the cookie is one this deployment made
    and it has not expired; None for anything else (absent, malformed, forged, expired,
    or claiming an expiry further off than a session lasts)."""
    if cookie is None or len(cookie) > MAX_COOKIE:
        return None
    shape = _SHAPE.fullmatch(cookie)
    if shape is None:
        return None
    found, expires_text, mac = shape.groups()
    expires = int(expires_text)
    if not hmac.compare_digest(_mac(key, found, expires), mac):
        return None
    # A MAC'd expiry is ours, but a session never outlives SESSION_S from now: a key
    # that signed a far expiry (a bug, a clock far off at login) does not grant more.
    if not now < expires <= now + SESSION_S:
        return None
    return found


def csrf(key: bytes, cookie: str) -> str:
    """The form token a state-changing form carries: bound to the session's cookie, so
    another site (which cannot read the cookie) cannot make one."""
    return hmac.new(key, _CSRF + cookie.encode("ascii"), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, cookie: str, sent: str | None) -> bool:
    """Whether ``sent`` is the form token of ``cookie`` (compared in constant time)."""
    if sent is None or len(sent) != 64 or not sent.isascii():
        return False
    return hmac.compare_digest(csrf(key, cookie), sent)
