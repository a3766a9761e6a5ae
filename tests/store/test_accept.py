"""The atomic acceptance: nonce, jti and clock are written together or not at all."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from attest.errors import UsageError
from attest.reasons import Reason
from attest.store import NonceRejected, NonceState, Replayed, Revoked, SeenClock, Store, acceptance
from attest.store.db import Transaction
from tests.store import reads
from tests.store.helpers import AK, HOST, KID, T0, clock, record


def _nothing_written(store: Store, jti: str, nonce: str | None = None) -> None:
    assert not reads.jti_seen(store, jti)
    assert reads.last_clock(store, AK) is None
    if nonce is not None:
        assert reads.nonce_state(store, nonce, T0) is NonceState.USABLE


def test_accept_writes_record_nonce_and_clock(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    sent = record("j1")
    store.accept(sent, nonce=nonce, single_use=True, clock=clock(500), now=T0 + 5)
    assert reads.artifact(store, "j1") == dataclasses.replace(sent, accepted_at=T0 + 5)
    assert reads.jti_seen(store, "j1")
    assert reads.nonce_state(store, nonce, T0 + 5) is NonceState.USED
    assert reads.last_clock(store, AK) == clock(500)


@pytest.mark.parametrize(("state", "reason"), [
    (NonceState.UNKNOWN, Reason.NONCE_UNKNOWN),
    (NonceState.USED, Reason.NONCE_REUSED),
    (NonceState.EXPIRED, Reason.STALE_EVIDENCE),
])
def test_rejected_nonce_writes_nothing(store: Store, state: NonceState, reason: Reason) -> None:
    nonce = "never-issued"
    now = T0
    if state is NonceState.USED:
        nonce = store.issue_nonce(60, T0)
        store.accept(record("first", ak="00" * 34), nonce=nonce, single_use=True,
                     clock=clock(1), now=T0)
    elif state is NonceState.EXPIRED:
        nonce = store.issue_nonce(60, T0)
        now = T0 + 60
    with pytest.raises(NonceRejected) as caught:
        store.accept(record("j1"), nonce=nonce, single_use=True, clock=clock(500), now=now)
    assert caught.value.state is state
    assert caught.value.reason is reason
    _nothing_written(store, "j1")


def test_replayed_jti_does_not_consume_the_nonce_or_move_the_clock(store: Store) -> None:
    store.accept(record("j1"), nonce=None, single_use=True, clock=clock(100), now=T0)
    nonce = store.issue_nonce(60, T0)
    with pytest.raises(Replayed) as caught:
        store.accept(record("j1"), nonce=nonce, single_use=True, clock=clock(900), now=T0)
    assert caught.value.reason is Reason.REPLAYED
    assert reads.nonce_state(store, nonce, T0) is NonceState.USABLE
    assert reads.last_clock(store, AK) == clock(100)


def test_multi_use_artifact_may_return_but_not_a_different_one_under_its_jti(
        store: Store) -> None:
    store.accept(record("j1"), nonce=None, single_use=False, clock=clock(100), now=T0)
    store.accept(record("j1"), nonce=None, single_use=False, clock=clock(200), now=T0 + 1)
    assert reads.last_clock(store, AK) == clock(200)
    assert reads.artifact(store, "j1") is not None
    assert reads.artifact(store, "j1").accepted_at == T0  # type: ignore[union-attr]
    with pytest.raises(Replayed):
        store.accept(record("j1", body="other"), nonce=None, single_use=False,
                     clock=clock(300), now=T0 + 2)
    assert reads.last_clock(store, AK) == clock(200)


def test_failing_in_transaction_hook_rolls_everything_back(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    seen: list[int] = []

    def audit(tx: Transaction) -> None:
        # The hook sees the acceptance's own uncommitted writes...
        seen.append(tx.scalar("SELECT count(*) FROM artifacts"))
        raise OSError("audit log unavailable")  # ...and its failure undoes them.

    with pytest.raises(OSError, match="audit"):
        store.accept(record("j1"), nonce=nonce, single_use=True, clock=clock(5), now=T0,
                     in_transaction=audit)
    assert seen == [1]
    _nothing_written(store, "j1", nonce)


@pytest.mark.parametrize("revoke", ["jti", "key", "ak", "host", "parent"])
def test_revoked_meanwhile_is_refused_inside_the_transaction(store: Store, revoke: str) -> None:
    store.accept(record("parent", ak="00" * 34), nonce=None, single_use=True, clock=clock(1),
                 now=T0)
    if revoke == "jti":
        store.revoke_artifact("child", "stolen", T0)
    elif revoke == "key":
        store.revoke_key(KID, "key lost", T0)
    elif revoke == "ak":
        store.revoke_ak(AK, "ak lost", T0)
    elif revoke == "host":
        store.revoke_host(HOST, "host gone", T0)
    else:
        store.revoke_artifact("parent", "parent withdrawn", T0)
    nonce = store.issue_nonce(60, T0)
    with pytest.raises(Revoked) as caught:
        store.accept(record("child", "parent"), nonce=nonce, single_use=True, clock=clock(5),
                     now=T0)
    expected = Reason.AK_REVOKED if revoke == "ak" else Reason.REVOKED
    assert caught.value.reason is expected
    _nothing_written(store, "child", nonce)


def test_its_own_key_ak_and_host_are_reported_before_its_jti(store: Store) -> None:
    store.revoke_artifact("j1", "artifact", T0)
    store.revoke_host(HOST, "host", T0)
    with pytest.raises(Revoked) as caught:
        store.accept(record("j1"), nonce=None, single_use=True, clock=clock(5), now=T0)
    assert caught.value.revocation.reason == "host"
    store.revoke_key(KID, "key", T0)
    with pytest.raises(Revoked) as caught:
        store.accept(record("j1"), nonce=None, single_use=True, clock=clock(5), now=T0)
    assert caught.value.revocation.reason == "key"


def test_a_stored_artifact_is_refused_for_what_its_row_rests_on(store: Store) -> None:
    # Presented again (multi-use) after what its stored row names was revoked: its host
    # when first accepted, or an ancestor's key.
    other_kid = "000b" + "77" * 32
    store.accept(record("p", kid=other_kid), nonce=None, single_use=False, clock=clock(1),
                 now=T0)
    store.accept(record("c", "p"), nonce=None, single_use=False, clock=clock(2), now=T0)
    store.accept(record("r", host="old-host"), nonce=None, single_use=False, clock=clock(3),
                 now=T0)
    store.revoke_host("old-host", "host retired", T0)
    with pytest.raises(Revoked) as caught:
        store.accept(record("r", host="new-host"), nonce=None, single_use=False,
                     clock=clock(4), now=T0)
    assert caught.value.revocation.subject == "old-host"
    store.accept(record("c", "p"), nonce=None, single_use=False, clock=clock(5), now=T0)
    store.revoke_key(other_kid, "parent's key lost", T0)
    with pytest.raises(Revoked) as caught:
        store.accept(record("c", "p"), nonce=None, single_use=False, clock=clock(6), now=T0)
    assert caught.value.revocation.subject == other_kid
    assert reads.last_clock(store, AK) == clock(5)


def test_malformed_record_is_refused_before_any_write(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    for bad in (dataclasses.replace(record("j1"), kid="not hex"),
                dataclasses.replace(record("j1"), sha256="00"),
                dataclasses.replace(record("j1"), jti="j" * 500),
                dataclasses.replace(record("j1"), depth=-1)):
        with pytest.raises(UsageError):
            store.accept(bad, nonce=nonce, single_use=True, clock=clock(1), now=T0)
    _nothing_written(store, "j1", nonce)


class TestClock:
    def test_unknown_until_an_acceptance(self, store: Store) -> None:
        assert reads.last_clock(store, AK) is None
        assert reads.last_clock(store, bytes.fromhex(AK)) is None

    def test_follows_acceptances_and_accepts_bytes_or_hex(self, store: Store) -> None:
        store.accept(record("a"), nonce=None, single_use=True, clock=clock(100), now=T0)
        store.accept(record("b"), nonce=None, single_use=True, clock=clock(250), now=T0)
        assert reads.last_clock(store, AK) == clock(250)
        assert reads.last_clock(store, bytes.fromhex(AK)) == clock(250)
        assert reads.last_clock(store, AK.upper()) == clock(250)

    def test_never_moves_back_within_an_epoch(self, store: Store) -> None:
        # Two quotes of one TPM accepted out of order: the high mark stays.
        store.accept(record("late"), nonce=None, single_use=True, clock=clock(900), now=T0)
        store.accept(record("early"), nonce=None, single_use=True, clock=clock(800), now=T0)
        assert reads.last_clock(store, AK) == clock(900)

    def test_a_new_epoch_replaces_the_old(self, store: Store) -> None:
        store.accept(record("a"), nonce=None, single_use=True, clock=clock(900), now=T0)
        # A later boot's clock is beyond the earlier boot's (safe clocks are never reported
        # twice): attest.store.epochs refuses anything else.
        store.accept(record("b"), nonce=None, single_use=True, clock=clock(905, reset=8),
                     now=T0)
        assert reads.last_clock(store, AK) == clock(905, reset=8)
        store.accept(record("c"), nonce=None, single_use=True,
                     clock=clock(907, reset=8, restart=4), now=T0)
        assert reads.last_clock(store, AK) == clock(907, reset=8, restart=4)

    def test_kept_per_ak(self, store: Store) -> None:
        other = "000b" + "b2" * 32
        store.accept(record("a"), nonce=None, single_use=True, clock=clock(100), now=T0)
        store.accept(record("b", ak=other), nonce=None, single_use=True,
                     clock=clock(5, reset=1), now=T0)
        assert reads.last_clock(store, AK) == clock(100)
        assert reads.last_clock(store, other) == clock(5, reset=1)

    def test_denials_leave_it_alone(self, store: Store) -> None:
        store.accept(record("a"), nonce=None, single_use=True, clock=clock(100), now=T0)
        with pytest.raises(NonceRejected):
            store.accept(record("b"), nonce="nope", single_use=True, clock=clock(999), now=T0)
        with pytest.raises(Replayed):
            store.accept(record("a"), nonce=None, single_use=True, clock=clock(999), now=T0)
        assert reads.last_clock(store, AK) == clock(100)


def test_forget_clock_readmits_an_ak(store: Store) -> None:
    store.accept(record("j-clock"), nonce=None, single_use=True, clock=clock(900), now=T0)
    assert reads.last_clock(store, AK) == clock(900)
    assert store.forget_clock(AK) is True
    assert reads.last_clock(store, AK) is None
    epoch = reads.epoch(store, AK)
    assert epoch is not None and epoch.reset_allowed  # the boot's clock range stays known
    assert store.forget_clock("000b" + "b2" * 32) is False


class _CommittedMeanwhile:
    """A transaction in which another verifier's first clock for the AK becomes visible
    right after this one's UPDATE found no row: what read committed allows on PostgreSQL
    (on SQLite the write lock rules it out), played deterministically on a real store."""

    def __init__(self, tx: Any, theirs: SeenClock) -> None:
        self._tx = tx
        self._theirs: SeenClock | None = theirs

    def execute(self, sql: str, params: Any = None) -> int:
        count = int(self._tx.execute(sql, params or {}))
        if self._theirs is not None and sql.startswith("UPDATE ak_clocks"):
            theirs, self._theirs = self._theirs, None
            self._tx.execute("INSERT INTO ak_clocks (ak_name, clock, reset_count, "
                             "restart_count, seen_at) VALUES (:ak, :ms, :r, :s, :now)",
                             {"ak": AK, "ms": theirs.clock, "r": theirs.reset_count,
                              "s": theirs.restart_count, "now": T0})
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def test_a_first_clock_committed_meanwhile_does_not_hide_a_later_one(store: Store) -> None:
    with store.write() as tx:
        acceptance.advance_clock(_CommittedMeanwhile(tx, clock(100)), AK, clock(200), T0)
    assert reads.last_clock(store, AK) == clock(200)  # ours is later: it is the high mark


def test_a_later_clock_committed_meanwhile_stays(store: Store) -> None:
    with store.write() as tx:
        acceptance.advance_clock(_CommittedMeanwhile(tx, clock(300)), AK, clock(200), T0)
    assert reads.last_clock(store, AK) == clock(300)
