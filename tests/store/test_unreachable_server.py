"""A PostgreSQL store out of reach, as an operator meets it on the command line: exit 3,
libpq's reason on one line, and a hint about PostgreSQL (not SQLite's directory and
lock). No server is needed: a loopback port nothing listens on refuses at once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli.main import cli

pytest.importorskip("psycopg")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_refused_postgresql_store_is_exit_3_on_one_line_with_its_hint(
        tmp_path: Path) -> None:
    url = f"postgresql://attest:s3cret@127.0.0.1:{_closed_port()}/attest"
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "replicas",
                                      "--store", url], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    error, hint = result.output.splitlines()[:2]
    assert error.startswith("error: verifier store ") and "refused" in error.lower()
    assert "\\x0a" not in result.output and "\\x09" not in result.output
    assert hint.startswith("hint: ") and "PostgreSQL is running" in hint
    assert "directory exists" not in hint
    assert "s3cret" not in result.output
