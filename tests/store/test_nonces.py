"""Interactive freshness: a nonce is unknown, usable, used or expired, and used at most once.

Nonces are minted challenges (attest.store.challenges): issuing one writes nothing; the
acceptance that answers one records it, and that row is what makes it single use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from attest.errors import UsageError
from attest.store import NonceRejected, NonceState, Store, challenges
from tests.store import reads
from tests.store.helpers import T0, clock, record


def _rows(store: Store) -> int:
    with store.read() as tx:
        return int(tx.scalar("SELECT count(*) FROM nonces"))


def _accept(store: Store, jti: str, nonce: str, now: int = T0 + 1) -> None:
    store.accept(record(jti), nonce=nonce, single_use=True, clock=clock(now - T0), now=now)


def _respelled(nonce: str, change: bytes) -> str:
    """``nonce`` with ``change`` XORed into its bytes, spelled canonically again."""
    raw = bytearray(base64.urlsafe_b64decode(nonce + "=="))
    for i, byte in enumerate(change):
        raw[i] ^= byte
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_issuing_a_nonce_writes_no_row(store: Store) -> None:
    store.issue_nonce(60, T0)  # the first creates the deployment's key
    with store.read() as tx:
        before = tx.scalar("SELECT count(*) FROM service_keys")
    nonces = {store.issue_nonce(60, T0) for _ in range(20)}
    assert len(nonces) == 20
    assert _rows(store) == 0
    with store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM service_keys") == before == 1


def test_a_nonce_fits_the_store_and_the_artifact_claim(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    assert len(nonce) == challenges.TOKEN_CHARS == 58
    assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    from attest.artifact.model import check_b64url
    from attest.store.schema import MAX_NONCE

    assert len(nonce) <= MAX_NONCE
    check_b64url(nonce, "eat_nonce")  # raises if the claim's format refuses it


def test_lifecycle_usable_until_ttl_then_expired(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    assert reads.nonce_state(store, nonce, T0) is NonceState.USABLE
    assert reads.nonce_state(store, nonce, T0 + 59) is NonceState.USABLE
    assert reads.nonce_state(store, nonce, T0 + 60) is NonceState.EXPIRED  # expires_at is exclusive


def test_the_snapshot_gives_when_the_challenge_was_issued(store: Store) -> None:
    nonce = store.issue_nonce(60, T0 + 5)
    with store.read() as tx:
        assert store.nonce_state_in(tx, nonce, T0 + 10) == (NonceState.USABLE, T0 + 5)


def test_unknown_nonces(store: Store) -> None:
    store.issue_nonce(60, T0)
    assert reads.nonce_state(store, "never-issued", T0) is NonceState.UNKNOWN
    assert reads.nonce_state(store, "x" * 10_000, T0) is NonceState.UNKNOWN
    assert reads.nonce_state(store, "A" * challenges.TOKEN_CHARS, T0) is NonceState.UNKNOWN


def test_used_once_then_reused(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    _accept(store, "j1", nonce)
    assert reads.nonce_state(store, nonce, T0 + 1) is NonceState.USED
    with pytest.raises(NonceRejected) as refused:
        _accept(store, "j2", nonce, T0 + 2)
    assert refused.value.state is NonceState.USED
    assert reads.jti_seen(store, "j2") is False  # the refusal left nothing behind


def test_a_used_nonce_once_expired_reads_expired(store: Store) -> None:
    # Expiry is judged before any row is read: either way the nonce is refused.
    nonce = store.issue_nonce(60, T0)
    _accept(store, "j1", nonce)
    assert reads.nonce_state(store, nonce, T0 + 3600) is NonceState.EXPIRED


def test_a_nonce_a_store_issued_as_a_row_is_honoured_until_it_expires(store: Store) -> None:
    # Issued by a release before challenges (32 random bytes, a row): still single use.
    legacy = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
    with store.write() as tx:
        tx.execute("INSERT INTO nonces (nonce, issued_at, expires_at, used_at) "
                   "VALUES (:n, :i, :e, NULL)", {"n": legacy, "i": T0, "e": T0 + 60})
    assert reads.nonce_state(store, legacy, T0) is NonceState.USABLE
    _accept(store, "j1", legacy)
    with pytest.raises(NonceRejected):
        _accept(store, "j2", legacy, T0 + 2)


def test_ttl_must_be_positive_and_at_most_a_week(store: Store) -> None:
    for ttl in (0, -5, challenges.MAX_LIFETIME_S + 1):
        with pytest.raises(UsageError):
            store.issue_nonce(ttl, T0)
    assert store.issue_nonce(challenges.MAX_LIFETIME_S, T0)


def test_purge_removes_only_long_expired_consumed_nonces(store: Store) -> None:
    old = store.issue_nonce(10, T0)
    fresh = store.issue_nonce(10, T0 + 1000)
    _accept(store, "j-old", old, T0 + 1)
    _accept(store, "j-fresh", fresh, T0 + 1001)
    assert store.purge_nonces(expired_before=T0 + 500) == 1
    assert reads.nonce_state(store, fresh, T0 + 1002) is NonceState.USED
    # Purged, the old one is still refused: its own expiry says so.
    assert reads.nonce_state(store, old, T0 + 1002) is NonceState.EXPIRED
    with pytest.raises(NonceRejected):
        _accept(store, "j-again", old, T0 + 1002)


# -- attacks ------------------------------------------------------------------------------


def test_a_forged_mac_is_unknown(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    forged = _respelled(nonce, bytes(challenges.TOKEN_BYTES - 1) + b"\x01")
    assert reads.nonce_state(store, forged, T0) is NonceState.UNKNOWN
    with pytest.raises(NonceRejected) as refused:
        _accept(store, "j1", forged)
    assert refused.value.state is NonceState.UNKNOWN
    assert _rows(store) == 0


def test_an_extended_expiry_is_unknown(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    # The last byte of expires_at: +0x80 seconds of life, MAC left as it was.
    at = 1 + challenges.RANDOM_BYTES + 2 * challenges.TIME_BYTES - 1
    flipped = _respelled(nonce, bytes(at) + b"\x80")
    assert reads.nonce_state(store, flipped, T0 + 100) is NonceState.UNKNOWN
    with pytest.raises(NonceRejected):
        _accept(store, "j1", flipped, T0 + 100)


def test_a_truncated_or_extended_nonce_is_unknown(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    for text in (nonce[:-1], nonce[:-4], nonce + "A", nonce[:43]):
        assert reads.nonce_state(store, text, T0) is NonceState.UNKNOWN, text
        with pytest.raises(NonceRejected):
            _accept(store, f"j-{len(text)}", text)


def test_another_spelling_of_a_used_nonce_is_not_a_second_use(store: Store) -> None:
    # 43 bytes in 58 characters leave 4 spare bits: setting them must not make a new nonce.
    nonce = store.issue_nonce(60, T0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(nonce[-1])
    respelled = [nonce[:-1] + alphabet[last | bits] for bits in range(1, 16)
                 if alphabet[last | bits] != nonce[-1]]
    assert respelled and all(base64.urlsafe_b64decode(t + "==") ==
                             base64.urlsafe_b64decode(nonce + "==") for t in respelled)
    _accept(store, "j1", nonce)
    for i, text in enumerate(respelled):
        assert reads.nonce_state(store, text, T0 + 1) is NonceState.UNKNOWN
        with pytest.raises(NonceRejected):
            _accept(store, f"j{i + 2}", text)


def test_a_nonce_of_another_deployment_is_unknown(tmp_path: Path, store: Store) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        foreign = other.issue_nonce(60, T0)
    store.issue_nonce(60, T0)
    assert reads.nonce_state(store, foreign, T0) is NonceState.UNKNOWN
    with pytest.raises(NonceRejected):
        _accept(store, "j1", foreign)


def test_no_nonce_is_valid_before_the_deployment_issued_one(store: Store) -> None:
    key = bytes(32)  # the key an attacker would guess for a store that has none yet
    guessed = challenges.mint(key, bytes(16), T0, T0 + 60)
    assert reads.nonce_state(store, guessed, T0) is NonceState.UNKNOWN
    with store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM service_keys") == 0  # reading made no key


def test_replicas_on_one_database_share_the_key_and_single_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Store.open(url) as one, Store.open(url) as two:
        nonce = one.issue_nonce(60, T0)
        assert reads.nonce_state(two, nonce, T0) is NonceState.USABLE
        _accept(two, "j1", nonce)
        with pytest.raises(NonceRejected) as refused:
            _accept(one, "j2", nonce, T0 + 2)
        assert refused.value.state is NonceState.USED
        assert reads.nonce_state(one, nonce, T0 + 2) is NonceState.USED


def _first_start(url: str, barrier: Any, out: Any) -> None:
    with Store.open(url) as store:
        barrier.wait()  # every replica asks for the key at once, none has it yet
        out.put(store.challenge_key(T0).hex())


def test_concurrent_first_starts_agree_on_one_key(url: str) -> None:
    Store.open(url).close()  # the schema, so that the replicas race for the key alone
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(4), context.Queue()
    procs = [context.Process(target=_first_start, args=(url, barrier, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    keys = {out.get(timeout=60) for _ in procs}
    for proc in procs:
        proc.join(timeout=30)
    assert all(proc.exitcode == 0 for proc in procs)
    assert len(keys) == 1
    with Store.open(url) as store, store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM service_keys") == 1
        assert store.challenge_key(T0).hex() in keys


# -- the format, as a known answer ---------------------------------------------------------


def test_the_challenge_format_known_answer() -> None:
    key = bytes(range(32))
    random = bytes(range(100, 116))
    text = challenges.mint(key, random, 1_764_000_000, 1_764_000_120)
    raw = base64.urlsafe_b64decode(text + "==")
    body = (b"\x01" + random + (1_764_000_000).to_bytes(5, "big")
            + (1_764_000_120).to_bytes(5, "big"))
    mac = hmac.new(key, b"attest challenge v1\x00" + body, hashlib.sha256).digest()[:16]
    assert raw == body + mac
    found = challenges.read(key, text)
    assert found == challenges.Challenge(text, 1_764_000_000, 1_764_000_120)
    assert challenges.read(bytes(32), text) is None


def test_mint_refuses_times_it_cannot_carry() -> None:
    key, random = bytes(32), bytes(16)
    week = challenges.MAX_LIFETIME_S
    for issued, expires in ((10, 10), (10, 5), (-1, 5), (0, challenges.MAX_TIME + 1),
                            (T0, T0 + week + 1)):
        with pytest.raises(ValueError):
            challenges.mint(key, random, issued, expires)


def test_a_challenge_that_outlives_a_week_is_refused_even_under_a_good_mac() -> None:
    # Only a key holder (a database reader) can make one; mint() refuses, so build it.
    key, at = bytes(range(32)), 1 + challenges.RANDOM_BYTES
    good = challenges.mint(key, bytes(16), T0, T0 + challenges.MAX_LIFETIME_S)
    assert challenges.read(key, good) is not None
    raw = bytearray(base64.urlsafe_b64decode(good + "=="))
    raw[at + challenges.TIME_BYTES:at + 2 * challenges.TIME_BYTES] = (
        T0 + challenges.MAX_LIFETIME_S + 1).to_bytes(challenges.TIME_BYTES, "big")
    body = bytes(raw[:at + 2 * challenges.TIME_BYTES])
    mac = hmac.new(key, b"attest challenge v1\x00" + body, hashlib.sha256).digest()[:16]
    long_lived = base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()
    assert challenges.read(key, long_lived) is None
