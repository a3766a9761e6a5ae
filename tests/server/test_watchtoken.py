"""The watch token's format (attest.server.watchtoken): one host, one expiry, one spelling,
under one deployment's key; everything else is no token."""

from __future__ import annotations

import base64

import pytest

from attest.server import watchtoken
from attest.server.watchtoken import KEY_BYTES, MAX_TOKEN_CHARS, WatchToken, mint, read

KEY = bytes(range(KEY_BYTES))


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _spell(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_reads_back_as_its_host_and_expiry() -> None:
    token = mint(KEY, "web-1", 1_800_000_000)
    assert read(KEY, token) == WatchToken("web-1", 1_800_000_000)
    assert read(KEY, mint(KEY, "h" * 255, 1)) == WatchToken("h" * 255, 1)
    assert len(mint(KEY, "\u00e9" * 127, 2**63 - 1)) <= MAX_TOKEN_CHARS


def test_anything_but_a_minted_token_is_none() -> None:
    token = mint(KEY, "web-1", 1_800_000_000)
    raw = _raw(token)
    other_host = bytearray(raw)
    other_host[1 + watchtoken.TIME_BYTES] ^= 1  # "web-1" -> "veb-1" under the old MAC
    longer = bytearray(raw)
    longer[watchtoken.TIME_BYTES] ^= 1  # a later expiry under the old MAC
    for refused in ("", token + "A", token[:-1], token.replace("-", "+"), token + "=",
                    _spell(bytes(other_host)), _spell(bytes(longer)),
                    _spell(bytes([2]) + raw[1:]), "\u00e9" * 10, "A" * (MAX_TOKEN_CHARS + 1),
                    mint(bytes(KEY_BYTES), "web-1", 1_800_000_000)):
        assert read(KEY, refused) is None, refused
    # A spelling with the spare bits of the last character set is not the token's.
    last = token[-1]
    for spare in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if spare != last and _raw(token[:-1] + spare) == raw:
            assert read(KEY, token[:-1] + spare) is None


def test_a_host_or_time_or_key_out_of_range_is_not_minted() -> None:
    for host, expires, key in (("", 1, KEY), ("h" * 256, 1, KEY), ("web-1", 0, KEY),
                               ("web-1", 2**64, KEY), ("web-1", 1, b"short")):
        with pytest.raises(ValueError):
            mint(key, host, expires)
