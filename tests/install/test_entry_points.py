"""`python -m attest` is the `attest` command; click's shell completion works for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO_ENV = {k: v for k, v in os.environ.items() if not k.startswith("_ATTEST_COMPLETE")}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env={**REPO_ENV, **(env or {})}, timeout=60, check=False)


def test_python_m_attest_help_is_the_attest_commands() -> None:
    done = _run("-m", "attest", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: attest [OPTIONS] COMMAND [ARGS]...")
    assert "attest docs" in done.stdout
    for command in ("docs", "swtpm", "verify", "provision"):
        assert f"\n  {command} " in done.stdout


def test_python_m_attest_keeps_the_exit_codes() -> None:
    assert _run("-m", "attest", "--version").stdout.strip() == "attest, version 0.1.0"
    assert _run("-m", "attest", "docs", "no-such-topic").returncode == 2
    assert _run("-m", "attest", "no-such-command").returncode == 2


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o nosort -F"),
                                               ("zsh", "#compdef attest"),
                                               ("fish", "complete --no-files --command attest")])
def test_completion_scripts_are_printed(shell: str, marker: str) -> None:
    done = _run("-m", "attest", env={"_ATTEST_COMPLETE": f"{shell}_source"})
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert "_ATTEST_COMPLETE" in done.stdout


def test_bash_completion_completes_commands_and_topics() -> None:
    def complete(words: str) -> list[str]:
        done = _run("-m", "attest", env={"_ATTEST_COMPLETE": "bash_complete",
                                         "COMP_WORDS": words,
                                         "COMP_CWORD": str(len(words.split()) - 1)})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "plain,swtpm" in complete("attest sw")
    assert "plain,docs" in complete("attest do")
    assert "plain,reasons" in complete("attest docs rea")
