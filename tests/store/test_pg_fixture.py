"""The PostgreSQL fixture (tests/pg.py): a real server on a unix socket only, with durable
commits; missing binaries skip, or fail where CI requires the server."""

from __future__ import annotations

import pytest

from attest.store import Store
from tests import pg
from tests.pg import PostgresServer


def test_the_server_listens_on_its_socket_only_and_commits_durably(pg_url: str) -> None:
    with Store.open(pg_url) as store, store.read() as tx:
        assert tx.scalar("SHOW listen_addresses") == ""
        assert tx.scalar("SHOW fsync") == "on"
        assert tx.scalar("SHOW synchronous_commit") == "on"
        assert tx.scalar("SELECT inet_server_addr()") is None  # connected over the socket


def test_each_test_gets_an_empty_database_of_its_own(postgres: PostgresServer) -> None:
    with postgres.database() as first, postgres.database() as second:
        assert first != second
        with Store.open(first) as store, store.write() as tx:
            tx.execute("INSERT INTO hosts VALUES ('h', 1, 1)")
        with Store.open(second) as store, store.read() as tx:
            assert tx.scalar("SELECT count(*) FROM hosts") == 0


@pytest.mark.parametrize(("required", "outcome"), [(False, pytest.skip.Exception),
                                                   (True, pytest.fail.Exception)])
def test_missing_binaries_skip_unless_required(monkeypatch: pytest.MonkeyPatch,
                                               required: bool, outcome: type) -> None:
    monkeypatch.setattr(pg, "binaries", lambda: None)
    monkeypatch.setattr(pg, "REQUIRE", required)
    with pytest.raises(outcome):
        pg.require_binaries()
