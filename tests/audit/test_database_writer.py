"""The audit log and the store against whoever can write the database file (issue 10,
item 15): foreign schema objects, unlogged trust, forks of signed heads, the log key."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.audit import AuditLog, HeadPolicy, NoteSigner, keys
from attest.audit.hooks import enrollment_entry, revocation_entry
from attest.cli.main import cli
from attest.errors import EXIT_ENVIRONMENT, AuditUnavailable, StoreUnavailable, UsageError
from attest.store import RevocationKind, Store, default_url
from tests.audit.conftest import entry, fill, run
from tests.store import reads
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
        assert not reads.jti_seen(store, "j1")
        assert log.size() == 0


def test_a_database_attest_made_opens(db: Path) -> None:
    with Store.open(default_url(db.parent)) as store:
        AuditLog.open(store, db.parent)
    # Every open checks the schema against what attest creates (attest.store.integrity).
    with Store.open(default_url(db.parent)) as store:
        AuditLog.open(store, db.parent)


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
        assert reads.last_clock(store, AK) == clock(1)


# -- no head inconsistent with the last one signed -----------------------------------------


def _truncate_and_drop_heads(db: Path, size: int) -> None:
    """What someone with the database but not the key does to fork the log at ``size``:
    entries, subtree hashes and heads past it deleted, the state row set back."""
    _sql(db, """
        DELETE FROM audit_entries WHERE idx >= @SIZE;
        DELETE FROM audit_nodes WHERE ((idx + 1) << level) > @SIZE;
        DELETE FROM audit_heads WHERE size > @SIZE;
        UPDATE audit_state SET size = @SIZE,
            head_size = (SELECT coalesce(max(size), 0) FROM audit_heads);
        """.replace("@SIZE", str(size)))


@pytest.mark.sqlite_only
def test_a_log_truncated_with_its_heads_deleted_is_not_signed_again(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9))
        fill(log, 8)  # heads at 4 and 8
        _truncate_and_drop_heads(tmp_path / "verifier.db", 5)
        assert run(tmp_path, "verify", "--key", str(log.verifier_key.encode())).exit_code == 0

        # The running signer refuses to sign the shorter tree, or a fork at the old size.
        with pytest.raises(AuditUnavailable, match="fewer than the 8 of the last head"):
            log.sign_head()
        log.record(entry(105))  # entries the attacker chose instead of 5..7
        log.record(entry(106))
        with pytest.raises(AuditUnavailable, match="does not extend the last head"):
            log.record(entry(107))  # a head is due at 8: another tree of 8
        assert log.size() == 7
        assert [h.size for h in log.all_heads()] == [4]
        # A signer starting on this database refuses to open it.
        with pytest.raises(AuditUnavailable, match="does not hold the last head this key"):
            AuditLog.open(store, tmp_path)
    # ...and the audit where the key is names the truncation.
    result = run(tmp_path, "verify")
    assert result.exit_code == 1
    assert "the trusted head covers 8 entries" in result.output


def test_a_log_that_extends_the_last_head_signs_on(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        fill(AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9)), 6)
        log = AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9))
        fill(log, 3)
        assert [h.size for h in log.all_heads()] == [4, 8]
        assert log.sign_head().size == 9
    assert keys.last_head(tmp_path, log.verifier_key) is not None
    assert run(tmp_path, "verify").exit_code == 0


# -- the log key is the verifier's alone ---------------------------------------------------


def test_the_log_key_is_not_the_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keys" / "default").mkdir(parents=True)
    for folder in (tmp_path, tmp_path / "keys", tmp_path / "keys" / "default"):
        monkeypatch.setenv("ATTEST_AUDIT_DIR", str(folder))
        with pytest.raises(UsageError, match="is the host's"):
            keys.load_or_create(tmp_path)
    assert not list(tmp_path.rglob(keys.PRIVATE_FILE))


def test_a_log_key_left_in_the_hosts_home_is_not_adopted(tmp_path: Path) -> None:
    legacy = tmp_path / keys.PRIVATE_FILE
    legacy.write_text(NoteSigner.generate("host/attest-audit").encode_private() + "\n")
    legacy.chmod(0o600)
    with pytest.raises(UsageError, match="in the host's home"):
        keys.load_or_create(tmp_path)


def test_the_verifier_key_folder_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTEST_AUDIT_DIR", str(tmp_path / "verifier"))
    signer = keys.load_or_create(tmp_path / "home")
    assert (tmp_path / "verifier" / keys.PRIVATE_FILE).is_file()
    assert keys.load(tmp_path / "elsewhere").verifier_key == signer.verifier_key


KEY_FILE_FAULTS = {
    "readable by the group": lambda key: key.chmod(0o640),
    "owned by another user": lambda key: os.chown(key, os.geteuid() + 4242, -1),
    "a symbolic link": lambda key: (key.rename(key.with_suffix(".real")),
                                    key.symlink_to(key.with_suffix(".real"))),
    "in a folder others can write": lambda key: key.parent.chmod(0o777),
    "in a folder of another user": lambda key: os.chown(key.parent, os.geteuid() + 4242, -1),
}


@pytest.mark.parametrize("fault", KEY_FILE_FAULTS.values(), ids=KEY_FILE_FAULTS.keys())
def test_a_log_key_others_can_reach_is_refused(tmp_path: Path,
                                              fault: Callable[[Path], object]) -> None:
    keys.load_or_create(tmp_path)
    fault(keys.key_dir(tmp_path) / keys.PRIVATE_FILE)
    with pytest.raises(UsageError):
        keys.load(tmp_path)
    with Store.open(default_url(tmp_path)) as store, pytest.raises(UsageError):
        AuditLog.open(store, tmp_path)


# -- the store and the log reconciled ------------------------------------------------------


@pytest.mark.sqlite_only
def test_changes_of_trust_kept_out_of_the_log_are_named(tmp_path: Path) -> None:
    """The trigger ran and was dropped (or the entries were deleted before a head covered
    them): the log verifies on its own, the store still shows what it lacks."""
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path)
        store.accept(record("jti-0"), nonce=None, single_use=True, clock=clock(1), now=T0,
                     in_transaction=lambda tx: log.append(tx, entry(0)) and None)
        store.accept(record("hidden"), nonce=None, single_use=True, clock=clock(2), now=T0)
        store.enroll("web-1", bytes.fromhex(AK), b"pub", b"qn", None, T0)
        store.revoke_host("web-2", "stolen", T0)
        store.revoke_key(AK, "retired", T0, in_transaction=lambda tx: log.append(
            tx, revocation_entry(RevocationKind.KEY, AK, "retired", time=T0)) and None)
    result = run(tmp_path, "verify", "--json")
    assert result.exit_code == 1
    found = [p["message"] for p in json.loads(result.output)["problems"]]
    assert found == [
        "the log has no entry for the accepted artifact 'hidden': kept out of the log",
        f"the log has no entry for the enrollment of AK '{AK}' as host 'web-1': kept out of "
        "the log",
        "the log has no entry for the revocation of host 'web-2': kept out of the log"]


def test_a_store_whose_changes_are_all_logged_reconciles(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path)
        store.accept(record("jti-0"), nonce=None, single_use=True, clock=clock(1), now=T0,
                     in_transaction=lambda tx: log.append(tx, entry(0)) and None)
        store.enroll("web-1", bytes.fromhex(AK), b"pub", b"qn", None, T0,
                     in_transaction=lambda tx, _move: log.append(
                         tx, enrollment_entry("web-1", AK, time=T0)) and None)
        revoked = store.revoke_artifact("jti-0", "leaked", T0, in_transaction=lambda tx, jtis: [
            log.append(tx, revocation_entry(RevocationKind.ARTIFACT, jti, "leaked", time=T0))
            for jti in jtis] and None)
    assert revoked == ["jti-0"]
    assert run(tmp_path, "verify").exit_code == 0


def _logged_trust(tmp_path: Path) -> None:
    """An AK enrolled for web-1 and another AK revoked, each with its entry."""
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path)
        store.enroll("web-1", bytes.fromhex(AK), b"pub", b"qn", None, T0,
                     in_transaction=lambda tx, _move: log.append(
                         tx, enrollment_entry("web-1", AK, time=T0)) and None)
        store.revoke_ak(OTHER_AK, "stolen", T0, in_transaction=lambda tx: log.append(
            tx, revocation_entry(RevocationKind.AK, OTHER_AK, "stolen", time=T0)) and None)
    assert run(tmp_path, "verify").exit_code == 0


OTHER_AK = "000b" + "b2" * 32


@pytest.mark.sqlite_only
def test_a_revocation_deleted_from_the_database_is_named(tmp_path: Path) -> None:
    """Deleting a revocation row lifts it (the verifier reads only the table); the log
    still records it, so the audit names the revocation the store no longer holds."""
    _logged_trust(tmp_path)
    _sql(tmp_path / "verifier.db", f"DELETE FROM revocations WHERE subject = '{OTHER_AK}'")  # noqa: S608
    with Store.open(default_url(tmp_path)) as store:
        assert store.snapshot(bytes.fromhex(OTHER_AK), jti="j", now=T0).revocations == ()
    result = run(tmp_path, "verify", "--json")
    assert result.exit_code == 1
    found = [p["message"] for p in json.loads(result.output)["problems"]]
    assert found == [f"the store no longer holds the revocation of ak '{OTHER_AK}' that the "
                     "log records: lifted outside attest"]


@pytest.mark.sqlite_only
def test_an_enrollment_moved_to_another_host_id_is_named(tmp_path: Path) -> None:
    """Rewriting an enrollment's host makes its AK speak for another host id (rules and
    revocations key on the host); the log's entry names the host it was enrolled as."""
    _logged_trust(tmp_path)
    rewrite = ("INSERT INTO hosts (host, first_enrolled_at, last_enrolled_at) "  # noqa: S608
               f"VALUES ('db-1', {T0}, {T0}); "
               f"UPDATE enrollments SET host = 'db-1' WHERE ak_name = '{AK}'")
    _sql(tmp_path / "verifier.db", rewrite)
    with Store.open(default_url(tmp_path)) as store:
        enrolled = store.enrollment(AK)
        assert enrolled is not None and enrolled.host == "db-1"
    result = run(tmp_path, "verify", "--json")
    assert result.exit_code == 1
    found = [p["message"] for p in json.loads(result.output)["problems"]]
    assert found == [f"the log has no entry for the enrollment of AK '{AK}' as host 'db-1': "
                     "kept out of the log"]


ROGUE_AK = "000b" + "c3" * 32


@pytest.mark.sqlite_only
def test_entries_forged_in_the_database_are_not_signed(tmp_path: Path) -> None:
    """Whoever writes the database appends, with attest's own code and a key of their own,
    an enrollment of their AK and its entry (subtree hashes and all): reconciliation is
    satisfied. The verifier must not sign a head over entries it did not append, and the
    audit where the key is names them."""
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9))
        fill(log, 4)  # a head at 4
        forger = AuditLog(store, NoteSigner.generate("forger/attest-audit"),
                          heads=HeadPolicy(every=10**9, interval=1e9))
        store.enroll("web-1", bytes.fromhex(ROGUE_AK), b"pub", b"qn", None, T0,
                     in_transaction=lambda tx, _move: forger.append(
                         tx, enrollment_entry("web-1", ROGUE_AK, time=T0)) and None)
        with pytest.raises(AuditUnavailable, match="entry 4 was not appended by this log"):
            log.sign_head()
        with pytest.raises(AuditUnavailable, match="entry 4 was not appended by this log"):
            fill(log, 3)  # a head is due at 8
        assert [h.size for h in log.all_heads()] == [4]
    result = run(tmp_path, "verify", "--json")
    assert result.exit_code == 1
    found = [p["message"] for p in json.loads(result.output)["problems"]]
    assert found == ["entry 4 was not appended by this log (its entry MAC is missing or "
                     "wrong): forged in the database"]


def test_entries_the_log_appended_sign_and_verify(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9))
        fill(log, 6)
        log.record_many([entry(6), entry(7), entry(8)])
        assert log.sign_head().size == 9
        fill(log, 2)
    assert run(tmp_path, "verify").exit_code == 0


@pytest.mark.sqlite_only
def test_a_log_signed_before_entry_macs_signs_on(tmp_path: Path) -> None:
    """An attest older than the MACs (and than last-head) left entries without MACs, all
    covered by a head its key signed: the head vouches for them; the log signs on."""
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9))
        fill(log, 4)
    _sql(tmp_path / "verifier.db", "DELETE FROM audit_macs")
    (keys.key_dir(tmp_path) / keys.LAST_HEAD_FILE).unlink()
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path, heads=HeadPolicy(every=4, interval=1e9))
        fill(log, 5)
        assert [h.size for h in log.all_heads()] == [4, 8]
        assert log.sign_head().size == 9
    (keys.key_dir(tmp_path) / keys.LAST_HEAD_FILE).unlink()
    assert run(tmp_path, "verify").exit_code == 0
