"""Interactive freshness: a nonce is unknown, usable, used or expired, and used at most once."""

from __future__ import annotations

import base64

import pytest

from attest.errors import UsageError
from attest.store import NonceState, Store
from tests.store import reads
from tests.store.helpers import T0, clock, record


def test_issued_nonce_is_32_random_bytes_base64url(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    assert "=" not in nonce and len(nonce) == 43
    assert len(base64.urlsafe_b64decode(nonce + "=")) == 32
    assert store.issue_nonce(60, T0) != nonce


def test_lifecycle_usable_until_ttl_then_expired(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    assert reads.nonce_state(store, nonce, T0) is NonceState.USABLE
    assert reads.nonce_state(store, nonce, T0 + 59) is NonceState.USABLE
    assert reads.nonce_state(store, nonce, T0 + 60) is NonceState.EXPIRED  # expires_at is exclusive


def test_unknown_nonces(store: Store) -> None:
    assert reads.nonce_state(store, "never-issued", T0) is NonceState.UNKNOWN
    assert reads.nonce_state(store, "x" * 10_000, T0) is NonceState.UNKNOWN


def test_used_wins_over_expired(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    store.accept(record("j"), nonce=nonce, single_use=True, clock=clock(1), now=T0 + 1)
    assert reads.nonce_state(store, nonce, T0 + 1) is NonceState.USED
    assert reads.nonce_state(store, nonce, T0 + 3600) is NonceState.USED


def test_ttl_must_be_positive(store: Store) -> None:
    with pytest.raises(UsageError):
        store.issue_nonce(0, T0)


def test_purge_removes_only_long_expired(store: Store) -> None:
    old = store.issue_nonce(10, T0)
    fresh = store.issue_nonce(10, T0 + 1000)
    assert store.purge_nonces(expired_before=T0 + 500) == 1
    assert reads.nonce_state(store, old, T0 + 1000) is NonceState.UNKNOWN
    assert reads.nonce_state(store, fresh, T0 + 1000) is NonceState.USABLE
