"""-v/--verbose: attest's log through the logging module, libtss2's behind it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli import verbosity
from attest.cli.main import cli
from tests.conftest import Host
from tests.manners.terminal import attest


@pytest.mark.parametrize(("count", "level", "tss"), [
    (0, logging.WARNING, "all+NONE"),
    (1, logging.INFO, "all+ERROR"),
    (2, logging.DEBUG, "all+WARNING"),
    (3, logging.DEBUG, "all+DEBUG"),
    (7, logging.DEBUG, "all+DEBUG"),
])
def test_each_v_says_more(count: int, level: int, tss: str) -> None:
    assert (verbosity.level(count), verbosity.tss_log(count)) == (level, tss)


def _audit_verify(home: Path, *flags: str) -> str:
    home.mkdir(mode=0o700, exist_ok=True)
    result = CliRunner().invoke(cli, [*flags, "audit", "verify"],
                                # an explicit TSS2_LOG: -v would set it for the whole process
                                env={"ATTEST_HOME": str(home), "TSS2_LOG": "all+NONE"},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stderr


def test_by_default_only_warnings_reach_stderr(tmp_path: Path) -> None:
    assert _audit_verify(tmp_path / "home") == ""


def test_v_shows_what_attest_does(tmp_path: Path) -> None:
    said = _audit_verify(tmp_path / "home", "-v")
    assert "attest: INFO: attest.audit.check: audit log: 0 entries" in said


def test_v_in_long_form_and_repeated(tmp_path: Path) -> None:
    assert "INFO" in _audit_verify(tmp_path / "home", "--verbose")
    assert "INFO" in _audit_verify(tmp_path / "home", "-vv")


def test_a_command_after_a_verbose_one_is_quiet_again(tmp_path: Path) -> None:
    _audit_verify(tmp_path / "home", "-v")
    assert _audit_verify(tmp_path / "home") == ""


def test_a_logged_name_cannot_drive_the_terminal(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths and record names in log lines are chosen by others: escaped as all output is.
    monkeypatch.setenv("TSS2_LOG", "all+NONE")
    verbosity.configure(1)
    try:
        logging.getLogger("attest.test").info("measured %s", "x\x1b[2J\nforged: ok")
    finally:
        verbosity.configure(0)
    said = capsys.readouterr().err
    assert "\x1b" not in said
    assert said == "attest: INFO: attest.test: measured x\\x1b[2J\\x0aforged: ok\n"


def test_vvv_lets_libtss2_speak(fresh_host: Host) -> None:
    env = {**fresh_host.env}
    quiet = attest(["pcr", "read", "0"], env, tty=False)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = attest(["-vvv", "pcr", "read", "0"], env, tty=False)
    assert loud.returncode == 0, loud.stderr
    assert "attest: INFO: attest.tpm.device: talking to the TPM through swtpm:" in loud.stderr
    # libtss2's own lines: "debug:tcti:src/tss2-tcti/...".
    assert re.search(r"^debug:(tcti|esys|sys):", loud.stderr, re.MULTILINE), loud.stderr


def test_an_explicit_tss2_log_wins_over_v(fresh_host: Host) -> None:
    ran = attest(["-vvv", "pcr", "read", "0"], {**fresh_host.env,
                                                       "TSS2_LOG": "all+NONE"}, tty=False)
    assert ran.returncode == 0, ran.stderr
    assert not re.search(r"^(debug|error|warning):", ran.stderr, re.MULTILINE), ran.stderr
    assert "attest: INFO: attest.tpm.device" in ran.stderr


def test_without_v_the_cli_leaves_the_log_level_to_an_embedding_program(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A program that runs the CLI in-process and logs attest at INFO still gets its
    # records; only stderr is kept to warnings.
    said = _audit_verify(tmp_path / "home")
    assert said == ""
    with caplog.at_level(logging.INFO):
        logging.getLogger("attest.audit.check").info("checked")
    assert "checked" in caplog.text


@pytest.mark.parametrize(("count", "uvicorn"), [(0, "warning"), (1, "info"), (2, "debug")])
def test_serve_passes_v_on_to_uvicorn(count: int, uvicorn: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvicorn")
    from attest.cli.serve import _uvicorn_level

    monkeypatch.setenv("TSS2_LOG", "all+NONE")
    verbosity.configure(count)
    try:
        assert _uvicorn_level() == uvicorn
    finally:
        verbosity.configure(0)
