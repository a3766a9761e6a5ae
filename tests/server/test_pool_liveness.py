"""The server store's pool without a ping per checkout (attest.store.server): a connection
that sat idle is pinged before use; one that breaks in use fails that transaction only
(StoreUnavailable: a denial or a 503), and the pool is replaced at once, so a replica
resumes by itself after a PostgreSQL restart rather than fail once per dead connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from attest.errors import StoreUnavailable
from attest.store import Store
from attest.store import server as server_store
from tests import pg

POOLED = 4  # connections open in the pool when the server restarts


@pytest.fixture
def own_server() -> Iterator[pg.PostgresServer]:
    with pg.started() as server:
        yield server


def _fill_pool(store: Store) -> None:
    """POOLED connections checked out at once, then all back in the pool."""
    inside = threading.Barrier(POOLED)

    def hold() -> None:
        with store.read() as tx:
            assert tx.scalar("SELECT 1") == 1
            inside.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(POOLED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


def _read(store: Store) -> int:
    with store.read() as tx:
        return int(tx.scalar("SELECT 1"))


def test_after_a_restart_one_transaction_fails_and_the_pool_is_replaced(
        own_server: pg.PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # No idle ping here: every pooled connection is dead, as when the restart falls
    # within IDLE_PING_S of their last use.
    monkeypatch.setattr(server_store, "IDLE_PING_S", 3600.0)
    with own_server.database() as url, Store.open(url) as store:
        _fill_pool(store)
        own_server.stop("immediate")
        own_server.start()
        with pytest.raises(StoreUnavailable):  # the dead connection's statement: named
            _read(store)
        # The other dead connections went with the pool: none fails a request of its own.
        assert [_read(store) for _ in range(POOLED + 1)] == [1] * (POOLED + 1)


def test_a_connection_that_sat_idle_is_pinged_and_replaced_before_use(
        own_server: pg.PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_store, "IDLE_PING_S", 0.0)  # every checkout is "idle"
    with own_server.database() as url, Store.open(url) as store:
        _fill_pool(store)
        own_server.stop("immediate")
        own_server.start()
        # Each dead connection fails its ping at checkout and is replaced: no failure.
        assert [_read(store) for _ in range(POOLED + 1)] == [1] * (POOLED + 1)


def test_a_broken_store_statement_is_unavailable_not_a_database_error(
        own_server: pg.PostgresServer) -> None:
    """The server stopped for good: the store says unavailable (a 503 or a denial),
    never a bug-shaped DatabaseError, and never hangs."""
    with own_server.database() as url, Store.open(url) as store:
        assert _read(store) == 1
        own_server.stop("immediate")
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                _read(store)
