"""Console sessions (attest.console.session): fixed vectors, then every way around the
cookie's check a client could try (forged MAC, other token id, expired, far future,
malformed, oversized), and the CSRF form token's binding to its session."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from attest.console import session

CHALLENGE_KEY = bytes(range(32))
ADMIN_ID = "0123456789abcdef"
NOW = 1_800_000_000
# HMAC-SHA256(CHALLENGE_KEY, "attest console session v1"), then over "<id>.<expiry>":
# fixed when the format was, computed with the standard library's hmac.
KEY_HEX = "1b1655325da519f54dfba6b94149df18d4b5a302fb4ae774d318aceafe5a7277"
VECTORS = [
    # (token id, now, cookie)
    (ADMIN_ID, NOW, "0123456789abcdef.1800028800."
     "787e492fe328002a7eec6e61a8174296ff5a37800ad81c9aef20e73e5048e2be"),
]


def key() -> bytes:
    return session.session_key(CHALLENGE_KEY)


def test_the_session_key_is_the_challenge_key_under_the_consoles_label() -> None:
    assert key().hex() == KEY_HEX
    assert key() != CHALLENGE_KEY
    with pytest.raises(ValueError):
        session.session_key(b"short")


@pytest.mark.parametrize(("token_id", "now", "cookie"), VECTORS)
def test_a_cookie_is_the_token_id_its_expiry_and_their_mac(token_id: str, now: int,
                                                           cookie: str) -> None:
    assert session.issue(key(), token_id, now) == cookie
    assert session.token_id(key(), cookie, now) == token_id
    assert session.token_id(key(), cookie, now + session.SESSION_S - 1) == token_id


def test_only_a_cookie_this_deployment_made_and_unexpired_names_a_token() -> None:
    good = session.issue(key(), ADMIN_ID, NOW)
    ident, expires, mac = good.split(".")
    other_key = session.session_key(bytes(32))
    forged_far = f"{ident}.{NOW + 10 * session.SESSION_S}."
    tries = [
        None, "", good + "0", good[:-1], good.upper(),
        f"{'f' * 16}.{expires}.{mac}",  # another token's id under this MAC
        f"{ident}.{int(expires) + 1}.{mac}",  # a later expiry under this MAC
        f"{ident}.{expires}.{'0' * 64}",
        session.issue(other_key, ADMIN_ID, NOW),  # another deployment's
        f"{ident}.0{expires}.{mac}", f"{ident}. {expires}.{mac}", f" {good}",
        f"{ident}.{expires}.{mac}.{mac}", "x" * 100_000,
        # MAC'd correctly but claiming more than a session lasts: still refused.
        forged_far + hmac.new(key(), forged_far[:-1].encode(), hashlib.sha256).hexdigest(),
    ]
    for cookie in tries:
        assert session.token_id(key(), cookie, NOW) is None, cookie
    assert session.token_id(key(), good, NOW + session.SESSION_S) is None  # expired
    assert session.token_id(other_key, good, NOW) is None
    with pytest.raises(ValueError):
        session.issue(key(), "not-an-id", NOW)


def test_a_form_token_belongs_to_one_session() -> None:
    one = session.issue(key(), ADMIN_ID, NOW)
    two = session.issue(key(), "fedcba9876543210", NOW)
    token = session.csrf(key(), one)
    assert session.csrf_matches(key(), one, token)
    for sent in (None, "", token.upper(), token[:-1], session.csrf(key(), two),
                 session.csrf(session.session_key(bytes(32)), one), "é" * 64):
        assert not session.csrf_matches(key(), one, sent), sent
