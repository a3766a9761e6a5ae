"""What the `attest run` tests share: a host ready to run, and the CLI in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Host


def attest_cli(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process: `attest run` replaces itself with CMD."""
    return subprocess.run([sys.executable, "-m", "attest.cli.main", *args],
                          env={**os.environ, **host.env}, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def ready(fresh_host: Host, tmp_path: Path) -> tuple[Host, Path]:
    """A host whose policy trusts it as it is, with `sh` among the reference values."""
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "sh", "-c", "true")
    policy = tmp_path / "policy.yaml"
    fresh_host.ok("policy", "init", "--from-host", "--out", str(policy))
    return fresh_host, policy
