"""Administrators' bearer tokens for the service: made once, stored as a hash.

A token is ``attest_<id>_<secret>``: a public id (8 random bytes, hex) that names its
row, and 32 random bytes (base64url). The store keeps the id, a name and the SHA-256
of the whole token, never the token: a copy of the database lets no one call the admin
API. :func:`check` finds the row by the id and compares digests in constant time, so
the time an answer takes says nothing about how much of a guess was right.

Rows carry no seal (attest.audit.seals): whoever writes the database can add a token,
and with it do through the API what a database writer can do already: revoke (deny;
an unsealed revocation row makes the audited verifier accept nothing at all) and read
the audit entries. No token lets anyone make the service accept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from attest.errors import UsageError
from attest.store.schema import MAX_TOKEN_NAME, admin_tokens
from attest.store.store import Store

PREFIX = "attest_"
ID_BYTES = 8
SECRET_BYTES = 32
_SHAPE = re.compile(r"attest_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_ID = re.compile(r"[0-9a-f]{16}")
# Bearer headers longer than any token are refused before hashing.
MAX_TOKEN_TEXT = 80

_INSERT = admin_tokens.insert()
_BY_ID = ("SELECT token_id, name, sha256, created_at, revoked_at FROM admin_tokens "
          "WHERE token_id = :id")
_ALL = ("SELECT token_id, name, created_at, revoked_at FROM admin_tokens "
        "ORDER BY created_at, token_id")
_REVOKE = ("UPDATE admin_tokens SET revoked_at = :now "
           "WHERE token_id = :id AND revoked_at IS NULL")


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret."""

    id: str
    name: str
    created_at: int
    revoked_at: int | None

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at,
                "revoked_at": self.revoked_at}


def create(store: Store, name: str, now: int) -> tuple[TokenInfo, str]:
    """A new token named ``name``: its row, and the token text (shown once, never stored)."""
    if not name or len(name) > MAX_TOKEN_NAME or not name.isprintable():
        raise UsageError(f"a token name is 1 to {MAX_TOKEN_NAME} visible characters")
    token_id = secrets.token_hex(ID_BYTES)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()
    token = f"{PREFIX}{token_id}_{secret}"
    with store.write() as tx:
        tx.execute(_INSERT, {"token_id": token_id, "name": name, "sha256": _digest(token),
                             "created_at": now, "revoked_at": None})
    return TokenInfo(token_id, name, now, None), token


def listed(store: Store) -> list[TokenInfo]:
    with store.read() as tx:
        rows = tx.all(_ALL)
    return [TokenInfo(r.token_id, r.name, r.created_at, r.revoked_at) for r in rows]


def revoke(store: Store, token_id: str, now: int) -> bool:
    """Revoke the token with ``token_id``; False when no such token was in force."""
    if not _ID.fullmatch(token_id):
        raise UsageError(f"not a token id: {token_id[:40]!r}",
                         hint="16 hex digits, as `attest admin token list` shows")
    with store.write() as tx:
        return tx.execute(_REVOKE, {"id": token_id, "now": now}) == 1


def check(store: Store, token: str) -> TokenInfo | None:
    """The token's row when ``token`` is one in force, else None (unknown, wrong or
    revoked: the caller answers all three alike)."""
    if len(token) > MAX_TOKEN_TEXT:
        return None
    shape = _SHAPE.fullmatch(token)
    if shape is None:
        return None
    with store.read() as tx:
        row = tx.first(_BY_ID, {"id": shape.group(1)})
    if row is None:
        return None
    if not hmac.compare_digest(_digest(token), row.sha256) or row.revoked_at is not None:
        return None
    return TokenInfo(row.token_id, row.name, row.created_at, row.revoked_at)


def in_force(store: Store, token_id: str) -> TokenInfo | None:
    """The token with ``token_id`` when it exists and is not revoked, else None: what a
    console session (attest.console.session), which holds the id and not the token,
    checks on each request so that revoking a token ends its sessions."""
    if not _ID.fullmatch(token_id):
        return None
    with store.read() as tx:
        row = tx.first(_BY_ID, {"id": token_id})
    if row is None or row.revoked_at is not None:
        return None
    return TokenInfo(row.token_id, row.name, row.created_at, row.revoked_at)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()
