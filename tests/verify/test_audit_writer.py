"""The audit log against whoever can write the verifier's database (issue 10, item 15).

Real artifacts from a swtpm, a real SQLite store, and the attacks done the way an
attacker with the database file would: SQL through another connection.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from attest.audit import AuditLog, HeadPolicy
from attest.errors import EXIT_ENVIRONMENT, StoreUnavailable
from attest.reasons import Reason
from attest.store import Store, default_url
from attest.tpm.hierarchy import load_identity
from tests.audit.conftest import entry
from tests.conftest import Host
from tests.store import reads
from tests.verify.rig import Rig, split, verify_logged

# Heads by hand only: an attack between two heads is the one that has a chance.
NO_AUTO_HEADS = HeadPolicy(every=1_000_000, interval=1e9)


def _hide_entries_of(db: Path, jti: str) -> None:
    """Triggers that drop ``jti``'s audit entry as it is appended and cover the gap:
    the log's size goes back by one and the next entry takes the index, subtree hashes
    are overwritten, so the log stays consistent and verifies."""
    with closing(sqlite3.connect(db)) as attacker:
        attacker.executescript("""
            CREATE TRIGGER hide BEFORE INSERT ON audit_entries
            WHEN json_extract(NEW.data, '$.jti') = '@JTI'
            BEGIN UPDATE audit_state SET size = size - 1; SELECT RAISE(IGNORE); END;
            CREATE TRIGGER overwrite BEFORE INSERT ON audit_nodes
            BEGIN DELETE FROM audit_nodes WHERE level = NEW.level AND idx = NEW.idx; END;
        """.replace("@JTI", jti))


@pytest.mark.sqlite_only
def test_a_trigger_hiding_an_acceptance_stops_the_verifier(rig: Rig, tmp_path: Path) -> None:
    store = rig.store()
    db = rig.tmp / "verifier" / "verifier.db"
    log = AuditLog.open(store, tmp_path / "verifier-home", heads=NO_AUTO_HEADS)
    verifier = rig.verifier(store=store)
    assert verify_logged(verifier, log, rig.issue()).accepted
    hidden = rig.issue("id")
    jti = split(hidden)[1]["jti"]
    _hide_entries_of(db, jti)

    # The verifier already running: the append sees the trigger in its own transaction
    # and the acceptance rolls back.
    decision = verify_logged(verifier, log, hidden)
    assert not decision.accepted
    assert Reason.AUDIT_UNAVAILABLE.value in decision.reasons
    assert not reads.jti_seen(store, jti)
    assert all(json.loads(e.data).get("jti") != jti or json.loads(e.data)["decision"] == "denied"
               for e in log.entries())
    # A verifier starting on this database refuses to.
    with pytest.raises(StoreUnavailable, match="trigger 'hide'"):
        Store.open(default_url(db.parent))


def _break_the_next_append(home: Path) -> None:
    """A log of one entry whose leaf row is gone: it opens, and the next append fails
    (it reads the tree's frontier)."""
    with Store.open(default_url(home)) as store:
        AuditLog.open(store, home).record(entry(0))
    with closing(sqlite3.connect(home / "verifier.db")) as db:
        db.execute("DELETE FROM audit_entries")
        db.commit()


@pytest.mark.sqlite_only
def test_an_enrollment_whose_entry_fails_is_not_committed(host: Host) -> None:
    _break_the_next_append(host.home)
    result = host.run("enroll", "--host", "web-1")
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    assert "audit_unavailable" in result.output
    with Store.open(default_url(host.home)) as store:
        assert store.enrollment(load_identity(host.home).ak_name) is None
        assert reads.enrollments_for(store, "web-1") == []


@pytest.mark.sqlite_only
def test_a_log_emptied_behind_the_verifiers_back_denies(rig: Rig, tmp_path: Path) -> None:
    """The log truncated to nothing and its heads deleted: the next acceptance would sign
    a head of a forked tree, so it is denied (audit_unavailable) and nothing commits."""
    store = rig.store()
    log = AuditLog.open(store, tmp_path / "verifier-home", heads=HeadPolicy(every=1))
    verifier = rig.verifier(store=store)
    assert verify_logged(verifier, log, rig.issue()).accepted  # head of size 1 signed
    with closing(sqlite3.connect(rig.tmp / "verifier" / "verifier.db")) as attacker:
        attacker.executescript("""
            DELETE FROM audit_entries; DELETE FROM audit_nodes; DELETE FROM audit_heads;
            UPDATE audit_state SET size = 0, head_size = 0, head_at = 0;""")
    forked = rig.issue("id")
    decision = verify_logged(verifier, log, forked)
    assert not decision.accepted
    assert Reason.AUDIT_UNAVAILABLE.value in decision.reasons
    assert not reads.jti_seen(store, split(forked)[1]["jti"])
    assert log.all_heads() == []
