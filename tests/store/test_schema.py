"""Opening a store: schema on first use, reopening, SQLite settings, and failures (exit 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select, update

from attest.errors import EXIT_ENVIRONMENT, StoreUnavailable, UsageError
from attest.store import Store, default_url
from attest.store.schema import STORE_SCHEMA_VERSION, schema_versions
from tests.store.helpers import T0, clock, record

TABLES = {"schema_versions", "hosts", "enrollments", "nonces", "artifacts", "ak_clocks",
          "revocations"}


def test_default_url_is_verifier_db_in_home(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/verifier.db"


def test_first_open_creates_every_table_and_the_version(tmp_path: Path, store: Store) -> None:
    assert (tmp_path / "verifier.db").is_file()
    assert set(inspect(store.engine).get_table_names()) == TABLES
    with store.read() as conn:
        rows = conn.execute(select(schema_versions)).all()
    assert [(r.component, r.version) for r in rows] == [("store", STORE_SCHEMA_VERSION)]


def test_reopen_keeps_data_and_does_not_recreate(url: str) -> None:
    with Store.open(url) as first:
        first.accept(record("j1"), nonce=None, single_use=True, clock=clock(10), now=T0)
        nonce = first.issue_nonce(60, T0)
    with Store.open(url) as second:
        assert second.jti_seen("j1")
        assert second.nonce_state(nonce, T0).value == "usable"
        with second.read() as conn:
            assert conn.execute(select(schema_versions)).all() == [("store", 1)]


def test_sqlite_runs_in_wal_with_durable_commits(store: Store) -> None:
    with store.read() as conn:
        pragma = conn.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar_one() >= 1000


def test_missing_directory_is_an_environment_problem(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(default_url(tmp_path / "no" / "such" / "dir"))
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert caught.value.hint


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "verifier.db").write_bytes(b"not sqlite at all, " * 100)
    with pytest.raises(StoreUnavailable):
        Store.open(default_url(tmp_path))


def test_unreachable_server_is_an_environment_problem() -> None:
    # Without psycopg installed the driver is missing; with it, nothing listens on port 1.
    with pytest.raises(StoreUnavailable):
        Store.open("postgresql+psycopg://attest@127.0.0.1:1/attest")


def test_malformed_url_is_bad_usage() -> None:
    with pytest.raises(UsageError):
        Store.open("not a url")


def test_newer_schema_is_refused(url: str) -> None:
    with Store.open(url) as store, store.write() as conn:
        conn.execute(update(schema_versions).values(version=STORE_SCHEMA_VERSION + 1))
    with pytest.raises(StoreUnavailable, match="knows up to"):
        Store.open(url)
