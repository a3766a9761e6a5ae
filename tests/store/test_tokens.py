"""Admin bearer tokens (attest.store.tokens) on a real store: shown once, kept as a hash,
refused when wrong in any part, revoked for good."""

from __future__ import annotations

import pytest

from attest.errors import UsageError
from attest.store import Store, tokens


def test_a_token_is_checked_whole_and_only_its_hash_is_kept(store: Store) -> None:
    info, token = tokens.create(store, "ops", 100)
    assert tokens.check(store, token) == info
    prefix, secret = token.rsplit("_", 1)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    other_id = f"attest_{'0' * 16}_{secret}"
    for wrong in (f"{prefix}_{flipped}", other_id, token + "A", token[:-1], "", token.upper(),
                  " " + token, "attest_" + "g" * 16 + "_" + secret, "x" * 10_000):
        assert tokens.check(store, wrong) is None, wrong
    with store.read() as tx:
        (row,) = [tuple(r) for r in tx.all("SELECT * FROM admin_tokens")]
    assert not any(secret in str(value) for value in row)


def test_a_revoked_token_stays_listed_and_refused(store: Store) -> None:
    kept, _ = tokens.create(store, "kept", 100)
    gone, token = tokens.create(store, "gone", 101)
    assert tokens.revoke(store, gone.id, 200) is True
    assert tokens.revoke(store, gone.id, 300) is False  # once: the first time stands
    assert tokens.check(store, token) is None
    assert [(t.name, t.revoked_at) for t in tokens.listed(store)] == [("kept", None),
                                                                      ("gone", 200)]
    assert kept.revoked_at is None


@pytest.mark.parametrize("name", ["", "n" * 65, "new\nline"])
def test_a_token_name_is_short_visible_text(store: Store, name: str) -> None:
    with pytest.raises(UsageError):
        tokens.create(store, name, 100)


def test_revoking_needs_a_token_id(store: Store) -> None:
    with pytest.raises(UsageError):
        tokens.revoke(store, "'; DROP TABLE admin_tokens; --", 100)
