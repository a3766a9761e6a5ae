"""Crash safety: an appending process killed with SIGKILL at random moments, 20 times.

Afterwards the log verifies, and every append the child saw return (and printed) is
in the log at the index it was given, with its own entry.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from attest.audit import AuditLog, verify_log
from attest.store import Store
from tests.audit.conftest import run

KILLS = 20
ROOT = Path(__file__).resolve().parents[2]


def _kill_while_appending(url: str, home: Path, run_id: int, rng: random.Random
                          ) -> dict[int, str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.audit.crash_child", url, str(home), f"r{run_id}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None
    first = child.stdout.readline()  # appends are running
    assert first, child.stderr.read().decode() if child.stderr else "no output"
    time.sleep(rng.uniform(0, 0.15))
    child.send_signal(signal.SIGKILL)
    rest, errors = child.communicate()
    assert child.returncode == -signal.SIGKILL, errors.decode()
    acknowledged: dict[int, str] = {}
    for line in (first + rest).decode().split("\n"):
        parts = line.split(" ")
        if len(parts) == 2:  # a line cut short by the kill is not an acknowledgement
            acknowledged[int(parts[0])] = parts[1]
    return acknowledged


def test_appends_survive_sigkill_and_the_log_verifies(home: Path, url: str) -> None:
    with Store.open(url) as store:
        AuditLog.open(store, home)  # the key and tables exist before the first kill
    rng = random.Random(6)  # noqa: S311 - kill moments, not secrets
    acknowledged: dict[int, str] = {}
    for run_id in range(KILLS):
        got = _kill_while_appending(url, home, run_id, rng)
        assert not got.keys() & acknowledged.keys(), "an index was handed out twice"
        acknowledged.update(got)
    with Store.open(url) as store:
        log = AuditLog.open(store, None)
        stored = {e.index: json.loads(e.data)["jti"] for e in log.entries()}
        summary = verify_log(store, AuditLog.open(store, home).verifier_key)
    assert summary.entries == len(stored) >= len(acknowledged) > KILLS
    missing = {i: jti for i, jti in acknowledged.items() if stored.get(i) != jti}
    assert not missing, f"acknowledged appends lost: {sorted(missing.items())[:5]}"
    assert run(home, "verify", "--store", url).exit_code == 0
