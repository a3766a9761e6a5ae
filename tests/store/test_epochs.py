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
from tests.store import reads
from tests.store.helpers import AK, T0, clock, record

_n = iter(range(1_000_000))


def _bound(sightings: list[tuple[int, int]]) -> int:
    """The reference model: the latest real time (ms) of the highest clock, from every
    (clock, now) sighting, the TPM clock running up to 15 % slow."""
    top = max(ms for ms, _ in sightings)
    return min((now + 1) * 1000 + -(-(top - ms) * 20 // 17) for ms, now in sightings)


def _accept(store: Store, ms: int, now: int = T0, reset: int = 7, restart: int = 3) -> None:
    store.accept(record(f"j{next(_n)}"), nonce=None, single_use=True,
                 clock=clock(ms, reset, restart), now=now)


def test_the_first_acceptance_starts_the_epoch(store: Store) -> None:
    assert reads.epoch(store, AK) is None
    _accept(store, 5000, now=T0)
    epoch = reads.epoch(store, AK)
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock, epoch.floor_clock) == (5000, 5000, None)
    assert epoch.last_time == (T0 + 1) * 1000


def test_out_of_order_quotes_widen_the_range_and_tighten_the_bound(store: Store) -> None:
    sightings = [(9000, T0 + 10), (5000, T0 + 5), (7000, T0 + 60)]
    for ms, now in sightings:
        _accept(store, ms, now=now)
    epoch = reads.epoch(store, AK)
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock) == (5000, 9000)
    # The earlier quote, seen sooner, bounds the later clock best: T0 + 6 s + 4.706 s.
    assert epoch.last_time == _bound(sightings) == (T0 + 6) * 1000 + 4706


def test_a_later_boot_replaces_the_epoch_and_keeps_its_last_clock_as_floor(store: Store) -> None:
    _accept(store, 5000)
    _accept(store, 9000)
    _accept(store, 9500, reset=8, now=T0 + 100)
    epoch = reads.epoch(store, AK)
    assert epoch is not None
    assert (epoch.reset_count, epoch.first_clock, epoch.last_clock, epoch.floor_clock) == (
        8, 9500, 9500, 9000)
    assert epoch.last_time == (T0 + 101) * 1000


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
    assert not reads.jti_seen(store, f"j{next(_n) - 1}")  # nothing was written


def test_a_clock_of_an_earlier_boot_is_refused_in_this_one(store: Store) -> None:
    _accept(store, 9000, reset=6)
    _accept(store, 9500)
    with pytest.raises(ClockRejected) as refused:
        _accept(store, 8000)  # this boot's counts, an earlier boot's clock
    assert refused.value.reason is Reason.CLOCK_ROLLBACK


def test_a_refused_reset_is_pending_until_readmitted(store: Store) -> None:
    _accept(store, 5000)
    store.record_reset(AK, clock(9000, reset=8), T0)
    epoch = reads.epoch(store, AK)
    assert epoch is not None and epoch.reset_pending and epoch.first_clock == 9000
    store.record_reset(AK, clock(9100, reset=8), T0)  # the same boot again: unchanged
    assert reads.epoch(store, AK) == epoch
    assert store.forget_clock(AK) is True
    epoch = reads.epoch(store, AK)
    assert epoch is not None and not epoch.reset_pending and not epoch.reset_allowed


def test_readmission_allows_the_next_reset(store: Store) -> None:
    _accept(store, 5000)
    store.forget_clock(AK)
    epoch = reads.epoch(store, AK)
    assert epoch is not None and epoch.reset_allowed
    _accept(store, 9000, reset=8)
    epoch = reads.epoch(store, AK)
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
        epoch = reads.epoch(stores[0], AK)
    finally:
        for opened in stores:
            opened.close()
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock) == (min(clocks), max(clocks))
    assert epoch.last_time == _bound([(clocks[i], T0 + i % 3) for i in range(16)])


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
                "last_clock": ms, "floor_clock": None, "last_time": T0 * 1000,
                "reset_state": 0, "seen_at": T0})
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def test_a_later_boot_committed_meanwhile_refuses_an_earlier_one(store: Store) -> None:
    with pytest.raises(ClockRejected) as refused, store.write() as tx:
        epoch_rows.advance_epoch(_OtherBootMeanwhile(tx, 9000, 8), AK, clock(5000), T0)
    assert refused.value.reason is Reason.STALE_EVIDENCE


def test_a_later_boot_accepted_without_readmission_stays_pending(store: Store) -> None:
    """Accepted by a policy that does not deny resets: recorded, but not admitted for one
    that does; a merge of the same boot does not admit it either."""
    _accept(store, 5000)
    _accept(store, 9000, reset=8)
    _accept(store, 9500, reset=8)
    epoch = reads.epoch(store, AK)
    assert epoch is not None and epoch.reset_pending and epoch.floor_clock == 5000
    assert store.forget_clock(AK)
    _accept(store, 9900, reset=8)
    epoch = reads.epoch(store, AK)
    assert epoch is not None and not epoch.reset_pending and not epoch.reset_allowed
