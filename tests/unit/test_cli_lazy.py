"""`attest` imports a command's module only when that command is looked up; --help lists all;
a local run or verify on the SQLite store never imports SQLAlchemy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from attest.cli.main import _COMMANDS, cli
from attest.host.run import default_subject
from tests.conftest import Host


def _modules_after(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.split()


def _attest_in_probe(args: list[str], modules: tuple[str, ...], env: dict[str, str]
                     ) -> tuple[str, list[str]]:
    """Run `attest ARGS` in a fresh interpreter: how it ended (its exit code, or "exec" when
    it would replace itself with the command) and which of ``modules`` it loaded."""
    probe = ("import os, sys\n"
             "from attest.cli.main import cli\n"
             "def _exec(path, argv, *env):\n"
             "    raise SystemExit('exec')\n"
             "os.execv = os.execve = _exec\n"
             "try:\n"
             f"    cli.main({args!r}, standalone_mode=False)\n"
             "    ended = 0\n"
             "except SystemExit as exc:\n"
             "    ended = exc.code\n"
             f"loaded = [m for m in {modules!r} if m in sys.modules]\n"
             "print(ended, *loaded)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, **env})
    ended, *loaded = done.stdout.splitlines()[-1].split()
    return ended, loaded


def test_help_lists_every_command_with_its_short_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0]: line.split(maxsplit=1)[1:] for line in
              result.output.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert set(listed) == set(_COMMANDS)
    assert all(listed.values())  # each with its short help


@pytest.mark.parametrize(("group", "subcommands"), [
    ("policy", {"approve", "init", "pcr"}),
    ("quote", {"create", "verify"}),
    ("ek", {"verify"}),
])
def test_groups_list_their_subcommands(group: str, subcommands: set[str]) -> None:
    result = CliRunner().invoke(cli, [group, "--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:", 1)[1].splitlines()
              if line.strip()}
    assert subcommands <= listed


def test_each_group_lives_in_one_module_with_all_its_subcommands() -> None:
    """The CLI's modules mirror the command tree: `attest X Y` is defined in the module
    that defines `attest X` (attest/cli/X.py for a group)."""
    for name, (module, _) in _COMMANDS.items():
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        if isinstance(command, click.Group):
            assert module == f"attest.cli.{name}"
            for sub in command.commands.values():
                assert sub.callback is not None
                assert sub.callback.__module__ == module, f"attest {name} {sub.name}"


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
    loaded = _modules_after(code, ("attest.host.run", "sqlalchemy", "yaml", "attest.store",
                                   "attest.verify.verifier"))
    assert loaded == ["attest.host.run"]


def test_a_local_run_and_verify_on_sqlite_never_import_sqlalchemy(fresh_host: Host,
                                                                 tmp_path: Path) -> None:
    # The store, the verifier and the audit log all run, on the default SQLite store.
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "/bin/true")
    policy = str(tmp_path / "policy.yaml")
    fresh_host.ok("policy", "init", "--from-host", "--out", policy)
    unwanted = ("sqlalchemy", "attest.store.server")
    assert _attest_in_probe(["run", "-q", "--policy", policy, "--", "/bin/true"], unwanted,
                            fresh_host.env) == ("exec", [])
    artifact = str(tmp_path / "artifact.jws")
    fresh_host.ok("authorize", "--subject", default_subject(), "--out", artifact, "--",
                  "/bin/true")
    assert _attest_in_probe(["verify", artifact, "--policy", policy], unwanted,
                            fresh_host.env) == ("0", [])
