"""The verifier's runtime log prefixes (attest.store.prefixes) on a real database: keyed
by AK, boot epoch, policy digest and count; a few slots per epoch; a later boot's whole
log drops the earlier boots' rows and the unconfirmed (segment) ones; a segment's row
drops nothing."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from attest.store import LogPrefix, Store, prefixes
from tests.store.helpers import AK, T0

POLICY = "ab" * 32


def _prefix(count: int, *, epoch: tuple[int, int] = (7, 0), ak: str = AK) -> LogPrefix:
    return LogPrefix(ak_name=ak, reset_count=epoch[0], restart_count=epoch[1],
                     policy_digest=POLICY, count=count,
                     digest=hashlib.sha256(str(count).encode()).digest(),
                     pcr_values=(("sha256", bytes([count % 256]) * 32),),
                     commands=frozenset({"cd" * 32}))


def _write(store: Store, prefix: LogPrefix, *, whole: bool = False) -> None:
    with store.write() as tx:
        prefixes.record(tx, prefix, T0, whole=whole)


def _counts(store: Store) -> list[tuple[int, int, int]]:
    with store.read() as tx:
        return [(row.reset_count, row.restart_count, row.record_count) for row in tx.all(
            "SELECT * FROM log_prefixes ORDER BY reset_count, restart_count, record_count")]


def test_a_row_reads_back_as_written_and_only_under_its_keys(store: Store) -> None:
    written = _prefix(5)
    _write(store, written)
    assert store.log_prefixes(AK, POLICY, 5) == (replace(written, accepted_at=T0),)
    assert store.log_prefixes(AK, POLICY, 4) == ()
    assert store.log_prefixes(AK, "cd" * 32, 5) == ()
    assert store.log_prefixes("000b" + "ee" * 32, POLICY, 5) == ()


def test_the_latest_few_are_kept_per_epoch(store: Store) -> None:
    for count in range(1, prefixes.SLOTS + 5):
        _write(store, _prefix(count))
    kept = sorted(count for _, _, count in _counts(store))
    assert kept == list(range(5, prefixes.SLOTS + 5))


def test_a_later_boots_whole_log_drops_the_earlier_boots_rows(store: Store) -> None:
    _write(store, _prefix(3))
    _write(store, _prefix(2, epoch=(8, 0)))  # sent from a prefix: nothing dropped
    assert _counts(store) == [(7, 0, 3), (8, 0, 2)]
    _write(store, _prefix(4, epoch=(8, 0)), whole=True)
    assert _counts(store) == [(8, 0, 2), (8, 0, 4)]


def test_a_segment_row_leaves_the_confirmed_rows_and_a_whole_log_drops_it(
        store: Store) -> None:
    _write(store, _prefix(3))
    _write(store, _prefix(9, epoch=(-1, -1)), whole=True)
    assert _counts(store) == [(-1, -1, 9), (7, 0, 3)]
    _write(store, _prefix(10), whole=True)
    assert _counts(store) == [(7, 0, 3), (7, 0, 10)]


def test_a_row_written_again_replaces_the_one_in_its_slot(store: Store) -> None:
    _write(store, replace(_prefix(3), seal=b"mac"))
    assert store.log_prefixes(AK, POLICY, 3)[0].seal == b"mac"
    _write(store, replace(_prefix(3), digest=bytes(32)))
    (row,) = store.log_prefixes(AK, POLICY, 3)
    assert row.digest == bytes(32) and row.seal is None
    _write(store, _prefix(3 + prefixes.SLOTS))  # the same slot, a later prefix
    assert store.log_prefixes(AK, POLICY, 3) == ()
    assert len(store.log_prefixes(AK, POLICY, 3 + prefixes.SLOTS)) == 1


def test_a_row_that_does_not_parse_is_as_if_absent(store: Store) -> None:
    _write(store, _prefix(3))
    with store.write() as tx:
        tx.execute("UPDATE log_prefixes SET pcr_values = 'not json'")
    assert store.log_prefixes(AK, POLICY, 3) == ()
