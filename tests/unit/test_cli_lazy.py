"""`attest` imports a command's module only when that command is looked up; --help lists all."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from attest.cli.main import _COMMANDS, cli


def _modules_after(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.split()


def test_help_lists_every_command_with_its_short_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0]: line.split(maxsplit=1)[1:] for line in
              result.output.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert set(listed) == {*_COMMANDS, "ek"}
    assert all(listed.values())  # each with its short help


@pytest.mark.parametrize(("group", "subcommands"), [
    ("policy", {"approve", "init", "pcr"}),
    ("quote", {"create", "verify"}),
    ("ek", {"verify"}),
])
def test_groups_get_the_subcommands_other_modules_add(group: str, subcommands: set[str]) -> None:
    result = CliRunner().invoke(cli, [group, "--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:", 1)[1].splitlines()
              if line.strip()}
    assert subcommands <= listed


def test_importing_the_cli_imports_no_command() -> None:
    assert _modules_after("import attest.cli.main", (
        "attest.cli.run", "attest.cli.verifier", "sqlalchemy", "tpm2_pytss", "yaml")) == []


def test_a_run_against_a_verifier_service_does_not_load_the_store() -> None:
    code = ("from attest.cli.main import cli\n"
            "try:\n"
            "    cli.main(['--tcti', 'swtpm:path=/nonexistent/s.sock', 'run', '--verifier',\n"
            "              'http://127.0.0.1:9', '--', 'true'], standalone_mode=False)\n"
            "except SystemExit:\n"
            "    pass\n")
    loaded = _modules_after(code, ("attest.execution", "sqlalchemy", "yaml", "attest.store",
                                   "attest.verify.verifier"))
    assert loaded == ["attest.execution"]
