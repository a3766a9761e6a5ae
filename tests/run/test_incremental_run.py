"""`attest run` sends its runtime log from the prefix its verifier acknowledged, and sends
it whole once more when the verifier no longer holds that prefix (log_prefix_unknown)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from attest.eventlog import prefix as log_prefix
from attest.host.runtime.prefixes import MEMORY_NAME
from tests.conftest import Host
from tests.run.conftest import attest_cli as _attest


def _counts(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT record_count FROM log_prefixes ORDER BY record_count")
        return [count for (count,) in rows]


def test_run_sends_from_the_acknowledged_prefix_and_retries_whole_on_a_fresh_store(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    host, policy = ready
    db = tmp_path / "verifier" / "verifier.db"
    db.parent.mkdir()
    store = f"sqlite:///{db}"
    command = ("run", "--policy", str(policy), "--store", store, "--", "sh", "-c", "true")

    first = _attest(host, *command)
    assert first.returncode == 0, first.stderr
    memory = json.loads((host.home / MEMORY_NAME).read_text())
    (remembered,) = memory.values()
    log = (host.home / "runtime.cel").read_bytes()
    assert remembered["count"] == 2  # the policy's measurement and this run's
    assert remembered["digest"] == log_prefix.prefix_digest(log).hex()

    second = _attest(host, *command)  # from record 2: the verifier appends its prefix
    assert second.returncode == 0, second.stderr
    assert _counts(db) == [2, 3]

    # A fresh verifier store under the same URL: it holds no prefix. The run's first
    # artifact is denied log_prefix_unknown; it is issued whole once more and accepted.
    for leftover in db.parent.iterdir():
        leftover.unlink()
    third = _attest(host, *command)
    assert third.returncode == 0, third.stderr
    assert _counts(db) == [4]
    with sqlite3.connect(db) as conn:
        entries = [bytes(data) for (data,) in conn.execute(
            "SELECT data FROM audit_entries ORDER BY idx")]
    # The denial of the artifact sent from the forgotten prefix, then the acceptance.
    assert len(entries) == 2
    assert b"log_prefix_unknown" in entries[0] and b"log_prefix_unknown" not in entries[1]
