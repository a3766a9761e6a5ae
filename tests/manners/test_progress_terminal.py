"""Progress on long work: a line on stderr when it is a terminal, nothing in a pipe."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from attest.audit import AuditLog, HeadPolicy
from attest.store import Store, default_url
from tests.audit.conftest import fill
from tests.conftest import Host
from tests.manners.terminal import attest

CLEAR = "\r\x1b[K"


def _logged(home: Path, entries: int) -> Path:
    home.mkdir(mode=0o700)
    with Store.open(default_url(home)) as store:
        fill(AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9)), entries)
    return home


def test_audit_verify_shows_its_progress_on_a_terminal_and_clears_it(tmp_path: Path) -> None:
    home = _logged(tmp_path / "home", 6)
    ran = attest(["audit", "verify"], {"ATTEST_HOME": str(home)}, tty=True)
    assert ran.returncode == 0, ran.stderr
    assert CLEAR + "checking audit entries: 100% (6 of 6 entries)" in ran.stderr
    assert "checking audit subtree hashes" in ran.stderr
    # Erased when done: the terminal is left as the summary alone would leave it.
    assert ran.stderr.endswith(CLEAR)
    assert ran.stdout.startswith("ok: 6 entries")


def test_audit_verify_in_a_pipe_prints_no_progress(tmp_path: Path) -> None:
    home = _logged(tmp_path / "home", 6)
    ran = attest(["audit", "verify"], {"ATTEST_HOME": str(home)}, tty=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    assert ran.stdout.startswith("ok: 6 entries")


def test_a_dumb_terminal_gets_no_progress_line(tmp_path: Path) -> None:
    # TERM=dumb cannot erase a line: the carriage returns would pile up.
    home = _logged(tmp_path / "home", 3)
    ran = attest(["audit", "verify"], {"ATTEST_HOME": str(home), "TERM": "dumb"}, tty=True)
    assert ran.returncode == 0, ran.stderr
    assert "\r" not in ran.stderr and "checking" not in ran.stderr


def test_an_error_on_a_terminal_starts_on_a_cleared_line(tmp_path: Path) -> None:
    # A denial after long work must not be glued to the half-drawn progress line.
    home = _logged(tmp_path / "home", 6)
    with closing(sqlite3.connect(home / "verifier.db")) as db, db:
        data = db.execute("SELECT data FROM audit_entries WHERE idx = 2").fetchone()[0]
        db.execute("UPDATE audit_entries SET data = ? WHERE idx = 2", (bytes(data) + b" ",))
    ran = attest(["audit", "verify"], {"ATTEST_HOME": str(home)}, tty=True)
    assert ran.returncode == 1
    before_error = ran.stderr.split("error:")[0]
    assert before_error.endswith(CLEAR), ran.stderr


def test_measuring_a_file_shows_the_hashing_on_a_terminal(fresh_host: Host,
                                                          tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00" * (3 << 20))  # three chunks
    ran = attest(["measure", "file", str(big)], fresh_host.env, tty=True)
    assert ran.returncode == 0, ran.stderr
    assert f"{CLEAR}hashing {big}: " in ran.stderr
    assert ran.stderr.endswith(CLEAR)
    piped = attest(["measure", "file", str(big)], fresh_host.env, tty=False)
    assert piped.returncode == 0, piped.stderr
    assert "hashing" not in piped.stderr and "\r" not in piped.stderr
