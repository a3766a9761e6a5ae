"""`attest admin token list` for people: times in UTC as `attest replicas` prints them,
not Unix seconds (found walking through docs/service.md as a new user)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from attest.cli.main import cli

_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _admin(tmp_path: Path, *args: str) -> str:
    store = f"sqlite:///{tmp_path / 'verifier.db'}"
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "admin", "token",
                                      *args, "--store", store], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_token_list_prints_creation_and_revocation_in_utc(tmp_path: Path) -> None:
    token = _admin(tmp_path, "create", "--name", "oncall").strip()
    token_id = token.split("_")[1]
    assert re.fullmatch(rf"{token_id}  oncall  created {_UTC}  in force\n",
                        _admin(tmp_path, "list"))
    _admin(tmp_path, "revoke", token_id)
    assert re.fullmatch(rf"{token_id}  oncall  created {_UTC}  revoked {_UTC}\n",
                        _admin(tmp_path, "list"))
