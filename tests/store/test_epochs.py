"""The AK's boot epoch in the store (ak_epochs): a monotone merge inside the acceptance.

Clock values follow what one TPM can report (safe clocks): a later boot's clocks are
beyond every clock of the earlier boots.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from attest.reasons import Reason
from attest.store import ClockRejected, Store
from attest.store import epochs as epoch_rows
from tests.store.helpers import AK, T0, clock, record

_n = iter(range(1_000_000))


def _accept(store: Store, ms: int, now: int = T0, reset: int = 7, restart: int = 3,
            nonce: str | None = None) -> None:
    store.accept(record(f"j{next(_n)}"), nonce=nonce, single_use=True,
                 clock=clock(ms, reset, restart), now=now)


def test_the_first_acceptance_starts_the_epoch(store: Store) -> None:
    assert store.epoch(AK) is None
    _accept(store, 5000, now=T0)
    epoch = store.epoch(AK)
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock, epoch.floor_clock) == (5000, 5000, None)
    assert epoch.origin_high == (T0 + 1) * 1000 - 5000
    assert epoch.origin_low is None


def test_out_of_order_quotes_widen_the_range_and_tighten_the_origin(store: Store) -> None:
    _accept(store, 9000, now=T0 + 10)
    _accept(store, 5000, now=T0 + 5)  # seen earlier by a verifier whose clock is behind
    _accept(store, 7000, now=T0 + 60)  # a late sighting loosens nothing
    epoch = store.epoch(AK)
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock) == (5000, 9000)
    assert epoch.origin_high == (T0 + 6) * 1000 - 5000


def test_a_quote_answering_a_challenge_raises_the_lower_bound(store: Store) -> None:
    nonce = store.issue_nonce(60, T0)
    _accept(store, 5000, now=T0 + 2, nonce=nonce)
    epoch = store.epoch(AK)
    assert epoch is not None and epoch.origin_low == T0 * 1000 - 5000
    _accept(store, 6000, now=T0 + 3)  # no challenge: the lower bound stays
    epoch = store.epoch(AK)
    assert epoch is not None and epoch.origin_low == T0 * 1000 - 5000


def test_a_later_boot_replaces_the_epoch_and_keeps_its_last_clock_as_floor(store: Store) -> None:
    _accept(store, 5000)
    _accept(store, 9000)
    _accept(store, 9500, reset=8, now=T0 + 100)
    epoch = store.epoch(AK)
    assert epoch is not None
    assert (epoch.reset_count, epoch.first_clock, epoch.last_clock, epoch.floor_clock) == (
        8, 9500, 9500, 9000)
    assert epoch.origin_high == (T0 + 101) * 1000 - 9500


@pytest.mark.parametrize(("ms", "reset", "reason"), [
    pytest.param(4000, 6, Reason.STALE_EVIDENCE, id="an-earlier-boot"),
    pytest.param(6000, 6, Reason.CLOCK_ROLLBACK, id="another-boot-inside-the-range"),
])
def test_a_quote_the_epoch_contradicts_is_refused_at_commit(
        store: Store, ms: int, reset: int, reason: Reason) -> None:
    """What a verifier that read the store before another committed a later boot sees."""
    _accept(store, 5000)
    _accept(store, 9000)
    with pytest.raises(ClockRejected) as refused:
        _accept(store, ms, reset=reset)
    assert refused.value.reason is reason
    assert not store.jti_seen(f"j{next(_n) - 1}")  # nothing was written


def test_a_clock_of_an_earlier_boot_is_refused_in_this_one(store: Store) -> None:
    _accept(store, 9000, reset=6)
    _accept(store, 9500)
    with pytest.raises(ClockRejected) as refused:
        _accept(store, 8000)  # this boot's counts, an earlier boot's clock
    assert refused.value.reason is Reason.CLOCK_ROLLBACK


def test_a_refused_reset_is_pending_until_readmitted(store: Store) -> None:
    _accept(store, 5000)
    store.record_reset(AK, clock(9000, reset=8), T0)
    epoch = store.epoch(AK)
    assert epoch is not None and epoch.reset_pending and epoch.first_clock == 9000
    store.record_reset(AK, clock(9100, reset=8), T0)  # the same boot again: unchanged
    assert store.epoch(AK) == epoch
    assert store.forget_clock(AK) is True
    epoch = store.epoch(AK)
    assert epoch is not None and not epoch.reset_pending and not epoch.reset_allowed


def test_readmission_allows_the_next_reset(store: Store) -> None:
    _accept(store, 5000)
    store.forget_clock(AK)
    epoch = store.epoch(AK)
    assert epoch is not None and epoch.reset_allowed
    _accept(store, 9000, reset=8)
    epoch = store.epoch(AK)
    assert epoch is not None and not epoch.reset_allowed and epoch.floor_clock == 5000


def test_parallel_acceptances_of_one_boot_all_commit_and_merge(url: str) -> None:
    """Honest quotes of one boot accepted by several verifiers at once: none is refused,
    and the merged range and bound are those of all of them."""
    clocks = [5000 + 137 * i for i in range(16)]
    stores = [Store.open(url) for _ in range(4)]
    try:
        def accept(i: int) -> None:
            stores[i % 4].accept(record(f"p{i}"), nonce=None, single_use=True,
                                 clock=clock(clocks[i]), now=T0 + i % 3)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(accept, reversed(range(16))))
        epoch = stores[0].epoch(AK)
    finally:
        for opened in stores:
            opened.close()
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock) == (min(clocks), max(clocks))
    assert epoch.origin_high == min((T0 + i % 3 + 1) * 1000 - clocks[i] for i in range(16))


class _OtherBootMeanwhile:
    """A transaction in which another verifier's first epoch row for the AK becomes visible
    right after this one's updates found none (PostgreSQL's read committed)."""

    def __init__(self, tx: Any, ms: int, reset: int) -> None:
        self._tx, self._theirs = tx, (ms, reset)

    def execute(self, sql: str, params: Any = None) -> int:
        count = int(self._tx.execute(sql, params or {}))
        if self._theirs is not None and sql.startswith("UPDATE ak_epochs SET reset_count"):
            (ms, reset), self._theirs = self._theirs, None
            self._tx.execute(epoch_rows._INSERT, {
                "ak_name": AK, "reset_count": reset, "restart_count": 3, "first_clock": ms,
                "last_clock": ms, "floor_clock": None, "origin_high": T0 * 1000,
                "origin_low": None, "reset_state": 0, "seen_at": T0})
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def test_a_later_boot_committed_meanwhile_refuses_an_earlier_one(store: Store) -> None:
    with pytest.raises(ClockRejected) as refused, store.write() as tx:
        epoch_rows.advance_epoch(_OtherBootMeanwhile(tx, 9000, 8), AK, clock(5000), T0, None)
    assert refused.value.reason is Reason.STALE_EVIDENCE
