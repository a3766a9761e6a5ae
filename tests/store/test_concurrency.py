"""Several verifiers on one SQLite file: each jti and each nonce is won exactly once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from attest.store import NonceRejected, NonceState, Replayed, Store
from tests.store import reads
from tests.store.helpers import T0, clock, contend, record

WORKERS = 4
STEPS = 30


def _race(url: str, plans: list[list[tuple[str, str | None]]]) -> dict[int, list[str]]:
    # spawn, not fork: each worker is a fresh interpreter with its own engine and pool.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(plans), timeout=60)  # a dead worker fails, not hangs
    results = ctx.Queue()
    procs = [ctx.Process(target=contend, args=(url, n, plan, barrier, results))
             for n, plan in enumerate(plans)]
    for proc in procs:
        proc.start()
    try:
        won = dict(results.get(timeout=120) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
    assert all(proc.exitcode == 0 for proc in procs)
    # The race really happened: the wins are spread, no worker simply ran ahead.
    assert sum(1 for jtis in won.values() if jtis) > 1
    return won


def test_processes_racing_for_the_same_jtis(url: str, store: Store) -> None:
    plan: list[tuple[str, str | None]] = [(f"jti-{i}", None) for i in range(STEPS)]
    won = _race(url, [plan] * WORKERS)
    counts = Counter(jti for jtis in won.values() for jti in jtis)
    assert counts == {f"jti-{i}": 1 for i in range(STEPS)}


def test_processes_racing_for_the_same_nonces(url: str, store: Store) -> None:
    nonces = [store.issue_nonce(600, T0) for _ in range(STEPS)]
    plans: list[list[tuple[str, str | None]]] = [
        [(f"w{w}-{i}", nonces[i]) for i in range(STEPS)] for w in range(WORKERS)]
    won = _race(url, plans)
    winners = sorted(jti for jtis in won.values() for jti in jtis)
    assert sorted(int(jti.split("-")[1]) for jti in winners) == list(range(STEPS))
    # A loser left nothing behind: only the winners' jtis exist, every nonce is used once.
    for w in range(WORKERS):
        for i in range(STEPS):
            assert reads.jti_seen(store, f"w{w}-{i}") == (f"w{w}-{i}" in winners)
    assert {reads.nonce_state(store, n, T0) for n in nonces} == {NonceState.USED}


def test_threads_sharing_one_store(store: Store) -> None:
    nonce = store.issue_nonce(600, T0)

    def attempt(n: int) -> str | None:
        try:
            store.accept(record("contested"), nonce=nonce, single_use=True, clock=clock(n),
                         now=T0)
        except (Replayed, NonceRejected) as refused:
            return refused.reason.value if refused.reason else "?"
        return "accepted"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = Counter(pool.map(attempt, range(16)))
    assert outcomes["accepted"] == 1
    assert outcomes["nonce_reused"] == 15  # the nonce is checked first, in the same transaction
