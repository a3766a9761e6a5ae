"""The audit log and the store against whoever can write the database file (issue 10,
item 15): foreign schema objects, unlogged trust, forks of signed heads, the log key."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.audit import AuditLog
from attest.cli.main import cli
from attest.errors import EXIT_ENVIRONMENT, AuditUnavailable, StoreUnavailable
from attest.store import Store, default_url
from tests.audit.conftest import entry, run
from tests.store.helpers import T0, clock, record


def _sql(db: Path, script: str) -> None:
    with closing(sqlite3.connect(db)) as attacker:
        attacker.executescript(script)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    with Store.open(default_url(tmp_path)) as store:
        AuditLog.open(store, tmp_path).record(entry(0))
    return tmp_path / "verifier.db"


FOREIGN = {
    # Replays pass: a second acceptance of a jti replaces the first instead of failing.
    "a table re-created with other constraints": """
        ALTER TABLE artifacts RENAME TO old;
        CREATE TABLE artifacts (jti VARCHAR(128) NOT NULL, sha256 VARCHAR(64) NOT NULL,
            parent_jti VARCHAR(128), depth INTEGER NOT NULL, exp BIGINT NOT NULL,
            host VARCHAR(255) NOT NULL, kid VARCHAR(256) NOT NULL,
            ak_name VARCHAR(256) NOT NULL, subject TEXT NOT NULL, scope TEXT NOT NULL,
            accepted_at BIGINT NOT NULL, PRIMARY KEY (jti) ON CONFLICT REPLACE);
        DROP TABLE old;""",
    # A unique index chosen to make the appends of chosen entries fail.
    "an index attest does not create": "CREATE UNIQUE INDEX ix_x ON audit_entries (leaf_hash)",
    "a view": "CREATE VIEW v AS SELECT * FROM audit_entries",
    "a trigger on a table that is not attest's":
        "CREATE TABLE t (x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
        "DELETE FROM audit_heads; END",
    "a trigger after updates":
        "CREATE TRIGGER tr AFTER UPDATE ON audit_state BEGIN SELECT 1; END",
}


@pytest.mark.parametrize("script", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_store_with_foreign_schema_objects_does_not_open(db: Path, script: str) -> None:
    _sql(db, script)
    with pytest.raises(StoreUnavailable, match="objects attest did not create"), \
            Store.open(default_url(db.parent)) as store:
        AuditLog.open(store, None)  # the audit component's tables are checked from here


def test_audit_verify_refuses_a_database_with_a_trigger(db: Path) -> None:
    _sql(db, "CREATE TRIGGER tr BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(IGNORE); END")
    result = run(db.parent, "verify")
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "trigger 'tr' on 'audit_entries'" in result.output


def test_a_trigger_installed_after_the_open_fails_the_append(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path)
        _sql(tmp_path / "verifier.db", "CREATE TRIGGER tr BEFORE INSERT ON artifacts "
             "BEGIN SELECT 1; END")
        with pytest.raises(AuditUnavailable, match="trigger 'tr' on 'artifacts'"):
            store.accept(record("j1"), nonce=None, single_use=True, clock=clock(1), now=T0,
                         in_transaction=lambda tx: log.append(tx, entry(0)) and None)
        _sql(tmp_path / "verifier.db", "DROP TRIGGER tr")
        assert not store.jti_seen("j1")
        assert log.size() == 0


def test_a_database_attest_made_opens(db: Path) -> None:
    with Store.open(default_url(db.parent)) as store:
        AuditLog.open(store, db.parent)
        store.check_schema()


def _break_the_next_append(home: Path) -> None:
    """A log of one entry whose leaf row is gone: it opens, and the next append fails
    (it reads the tree's frontier)."""
    with Store.open(default_url(home)) as store:
        AuditLog.open(store, home).record(entry(0))
    _sql(home / "verifier.db", "DELETE FROM audit_entries")


AK = "000b" + "a1" * 32
CHANGES = {
    "revoke a host": ["revoke", "--host", "web-1", "--reason", "stolen"],
    "revoke an artifact": ["revoke", "--jti", "j1", "--reason", "leaked"],
    "revoke an AK": ["revoke", "--ak", AK, "--reason", "stolen"],
    "revoke a key": ["revoke", "--key", AK, "--reason", "retired"],
}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args", CHANGES.values(), ids=CHANGES.keys())
def test_a_revocation_whose_entry_fails_is_not_committed(tmp_path: Path,
                                                         args: list[str]) -> None:
    _break_the_next_append(tmp_path)
    result = CliRunner().invoke(cli, args, env={"ATTEST_HOME": str(tmp_path),
                                                "ATTEST_STORE": None})
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    with closing(sqlite3.connect(tmp_path / "verifier.db")) as db:
        assert db.execute("SELECT count(*) FROM revocations").fetchone() == (0,)


@pytest.mark.sqlite_only
def test_a_readmission_whose_entry_fails_is_not_committed(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        store.accept(record("j1", ak=AK), nonce=None, single_use=True, clock=clock(1), now=T0)
    _break_the_next_append(tmp_path)
    result = CliRunner().invoke(cli, ["readmit", "--ak", AK, "--reason", "bios update"],
                                env={"ATTEST_HOME": str(tmp_path), "ATTEST_STORE": None})
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    with Store.open(default_url(tmp_path)) as store:
        assert store.last_clock(AK) == clock(1)
