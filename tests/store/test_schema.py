"""Opening a store: schema on first use, reopening, SQLite settings, and failures (exit 3)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from attest.audit import AuditLog, verify_log
from attest.audit import schema as audit_schema
from attest.errors import EXIT_ENVIRONMENT, StoreUnavailable, UsageError
from attest.store import Store, default_url
from attest.store import schema as store_schema
from attest.store.schema import STORE_SCHEMA_VERSION
from tests.audit.conftest import entry
from tests.store import reads
from tests.store.helpers import T0, clock, record

TABLES = {"schema_versions", "hosts", "enrollments", "nonces", "artifacts", "ak_clocks",
          "revocations", "host_eks", "ak_eks", "approval_serials", "ak_epochs",
          "tpm_approval_serials", "artifact_approvals", "enrollment_seals",
          "artifact_seals", "revocation_seals", "revocation_aggregate", "log_prefixes",
          "replicas", "service_keys", "admin_tokens", "host_decisions", "host_trust",
          "events", "webhook_cursors", "host_reports"}
# Added after version 1 without a version change: every store that opens gains them.
ADDED = (store_schema.host_eks, store_schema.ak_eks, store_schema.approval_serials,
         store_schema.ak_epochs, store_schema.tpm_approval_serials,
         store_schema.artifact_approvals, store_schema.enrollment_seals,
         store_schema.artifact_seals, store_schema.revocation_seals,
         store_schema.revocation_aggregate, store_schema.log_prefixes, store_schema.replicas,
         store_schema.service_keys, store_schema.admin_tokens, store_schema.host_decisions,
         *store_schema.ADDED_IN_V3, audit_schema.audit_macs)
HERE = Path(__file__).parent


def _reference(dialect: str) -> list[str]:
    """Schema version 1 as attest created it when it went through SQLAlchemy Core."""
    text = (HERE / f"schema_v1.{dialect}.sql").read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("--")]
    return [statement.strip() for statement in "".join(lines).split(";") if statement.strip()]


def _sqlite_schema(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return sorted(sql for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))


def test_default_url_is_verifier_db_in_home(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/verifier.db"


@pytest.mark.sqlite_only
def test_first_open_creates_every_table_and_the_version(tmp_path: Path, store: Store) -> None:
    assert (tmp_path / "verifier.db").is_file()
    with store.read() as tx:
        names = {row.name for row in tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = tx.all("SELECT component, version FROM schema_versions")
    assert names == TABLES
    assert [(r.component, r.version) for r in rows] == [("store", STORE_SCHEMA_VERSION)]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_tables_are_created_as_earlier_attest_created_them(dialect: str) -> None:
    rendered = [statement.replace(" IF NOT EXISTS", "")
                for table in (*store_schema.V1_TABLES, *audit_schema.TABLES)
                if table is not audit_schema.audit_macs  # added since (ADDED)
                for statement in table.create(dialect)]
    assert sorted(rendered) == sorted(_reference(dialect))


def test_a_database_created_by_earlier_attest_opens_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "verifier.db"
    with closing(sqlite3.connect(path)) as db, db:
        for statement in _reference("sqlite"):
            db.execute(statement)
        db.executemany("INSERT INTO schema_versions VALUES (?, ?)", [("store", 1), ("audit", 1)])
        db.execute("INSERT INTO audit_state VALUES (1, 0, 0, 0)")
    before = _sqlite_schema(path)
    with Store.open(default_url(tmp_path)) as store:
        # jti-0: entry(0)'s, so that the acceptance has its entry (audit.reconcile).
        store.accept(record("jti-0"), nonce=None, single_use=True, clock=clock(10), now=T0)
        log = AuditLog.open(store, tmp_path)
        assert log.record(entry(0)) == 0
        assert verify_log(store, log.verifier_key).entries == 1
        assert reads.jti_seen(store, "jti-0")
    gained = [statement for table in ADDED for statement in table.create("sqlite")]
    assert _sqlite_schema(path) == sorted(
        before + [statement.replace(" IF NOT EXISTS", "") for statement in gained])


def test_reopen_keeps_data_and_does_not_recreate(url: str) -> None:
    with Store.open(url) as first:
        first.accept(record("j1"), nonce=None, single_use=True, clock=clock(10), now=T0)
        nonce = first.issue_nonce(60, T0)
    with Store.open(url) as second:
        assert reads.jti_seen(second, "j1")
        assert reads.nonce_state(second, nonce, T0).value == "usable"
        with second.read() as tx:
            assert tx.all("SELECT component, version FROM schema_versions") == [
                ("store", STORE_SCHEMA_VERSION)]


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_with_durable_commits(store: Store) -> None:
    with store.read() as tx:
        assert tx.scalar("PRAGMA journal_mode") == "wal"
        assert tx.scalar("PRAGMA synchronous") == 2  # FULL
        assert tx.scalar("PRAGMA foreign_keys") == 1
        assert tx.scalar("PRAGMA busy_timeout") >= 1000


def test_missing_directory_is_an_environment_problem(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(default_url(tmp_path / "no" / "such" / "dir"))
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert caught.value.hint


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "verifier.db").write_bytes(b"not sqlite at all, " * 100)
    with pytest.raises(StoreUnavailable):
        Store.open(default_url(tmp_path))


@pytest.mark.parametrize("url", ["postgresql+psycopg://attest@127.0.0.1:1/attest",
                                 "postgresql://attest@127.0.0.1:1/attest"])
def test_unreachable_server_is_an_environment_problem(url: str) -> None:
    # Without psycopg installed the driver is missing; with it, nothing listens on port 1.
    # A bare postgresql:// goes through psycopg too, never SQLAlchemy's psycopg2 default.
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(url)
    assert "psycopg2" not in caught.value.message


@pytest.mark.parametrize("url", ["not a url", "sqlite://", "sqlite:///:memory:",
                                 "sqlite:///verifier.db?timeout=1", "sqlite://host/db",
                                 "mysql://attest@127.0.0.1/attest",
                                 "postgresql+psycopg2://attest@127.0.0.1:1/attest",
                                 "postgresql+pg8000://attest@127.0.0.1:1/attest"])
def test_a_url_the_store_cannot_use_is_bad_usage(url: str) -> None:
    with pytest.raises(UsageError):
        Store.open(url)


def test_newer_schema_is_refused(url: str) -> None:
    with Store.open(url) as store, store.write() as tx:
        tx.execute("UPDATE schema_versions SET version = :version",
                   {"version": STORE_SCHEMA_VERSION + 1})
    with pytest.raises(StoreUnavailable, match="knows up to"):
        Store.open(url)
