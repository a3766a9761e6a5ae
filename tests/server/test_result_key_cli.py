"""`attest result key` says when it made the key it prints: run on a host by mistake,
it printed a fresh key silently, which no verifier signs with."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from attest.cli.main import cli


def test_result_key_says_when_it_made_a_new_key_and_only_then(tmp_path: Path) -> None:
    args = ["--home", str(tmp_path / "home"), "result", "key"]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0
    assert first.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert "made a new result key" in first.stderr and "attest serve" in first.stderr
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert again.stderr == ""
