"""Concurrent `attest run` on one host: every honest run is accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Host

RUNS = 16


@pytest.fixture
def ready(fresh_host: Host, tmp_path: Path) -> tuple[Host, Path]:
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "sh", "-c", "true")
    policy = tmp_path / "policy.yaml"
    fresh_host.ok("policy", "init", "--from-host", "--out", str(policy))
    return fresh_host, policy


def test_sixteen_concurrent_runs_all_succeed(ready: tuple[Host, Path]) -> None:
    host, policy = ready
    env = {**os.environ, **host.env, "TSS2_LOG": "all+NONE"}
    runs = [subprocess.Popen([sys.executable, "-m", "attest.cli.main", "run", "--policy",
                              str(policy), "--", "sh", "-c", f"exit {i % 3}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(RUNS)]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    failed = [(i, code, err) for i, (code, _, err) in enumerate(results) if code != i % 3]
    assert not failed, failed
