"""Where the home is without --home: ATTEST_HOME, else $XDG_STATE_HOME/attest, else
~/.local/state/attest, and an existing old home is kept (attest.home)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli.main import cli
from attest.cli.thin import socket_path
from attest.home import default_home, resolve_home


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home directory with nothing of attest in it."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("ATTEST_HOME", "XDG_STATE_HOME", "ATTEST_AGENT_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_without_either_variable_the_home_is_xdgs_default(user: Path) -> None:
    assert resolve_home() == user / ".local" / "state" / "attest"


def test_xdg_state_home_is_honoured(user: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert resolve_home() == tmp_path / "state" / "attest"


def test_attest_home_and_home_option_win_over_xdg(user: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("ATTEST_HOME", str(tmp_path / "mine"))
    assert resolve_home() == tmp_path / "mine"
    assert resolve_home(tmp_path / "given") == tmp_path / "given"


def test_an_existing_old_home_is_kept_until_the_xdg_one_exists(
        user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host provisioned before XDG_STATE_HOME was set keeps its identity and keys,
    rather than looking unprovisioned; once the new home is made, it wins."""
    old = user / ".local" / "state" / "attest"
    old.mkdir(parents=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert resolve_home() == old
    (tmp_path / "state" / "attest").mkdir(parents=True)
    assert resolve_home() == tmp_path / "state" / "attest"


@pytest.mark.parametrize("state", ["relative/state", "", "."])
def test_a_relative_xdg_state_home_is_ignored_as_the_spec_says(
        user: Path, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", state)
    assert resolve_home() == user / ".local" / "state" / "attest"


def test_an_old_home_that_is_a_file_does_not_win(user: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (user / ".local" / "state").mkdir(parents=True)
    (user / ".local" / "state" / "attest").write_text("not a home")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert resolve_home() == tmp_path / "state" / "attest"


def test_the_thin_run_path_and_the_cli_agree(user: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert socket_path() == str(tmp_path / "state" / "attest" / "agent.sock")
    assert default_home({"XDG_STATE_HOME": str(tmp_path / "state")}) == str(
        tmp_path / "state" / "attest")


def test_the_cli_uses_the_xdg_home(user: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`attest challenge` makes its default store in the home: under XDG_STATE_HOME."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    done = CliRunner().invoke(cli, ["challenge"], env={"ATTEST_STORE": ""})
    assert done.exit_code == 0, done.output
    assert (tmp_path / "state" / "attest" / "verifier.db").exists()
    assert not (user / ".local").exists()
