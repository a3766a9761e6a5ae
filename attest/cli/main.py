"""The `attest` command: parse input, call the library, render output.

Exit codes (attest.cli.failure, docs/reasons.md): 0 ok, 1 refused or invalid evidence
(with a reason code), 2 usage (a bad flag, a file that cannot be opened, a policy that
does not load), 3 environment (no TPM, full disk; naming the path). With --json an
error is a JSON object on stdout too. No traceback reaches a user; ATTEST_DEBUG=1
shows one for a bug report.
"""

from __future__ import annotations

import os
import sys

# `attest run` through a host agent: decided before click and the command tree are
# imported (they cost more than the whole run does); it execs CMD or exits, or returns
# and the full CLI runs (attest.cli.thin).
if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "attest":
    from attest.cli.thin import maybe_thin_run

    maybe_thin_run(sys.argv[1:])

import importlib
import signal
import traceback
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from attest import __version__, progress, tctiuse
from attest.cli import verbosity
from attest.cli.failure import (
    JSON_FLAG,
    Failure,
    report,
    report_error,
    report_os_error,
)
from attest.cli.terminal import TerminalProgress, is_terminal, visible
from attest.errors import EXIT_REFUSED, EXIT_USAGE, AttestError, TSSUnavailable
from attest.home import resolve_home


@dataclass
class Context:
    tcti: str | None
    home: Path


# Where each command lives: name -> (module, attribute); a group's subcommands live in
# its module (the CLI's modules mirror the command tree). A command's module is imported
# when the command is looked up, so `attest run` does not import what `attest provision`
# or `attest audit` need; `attest --help` looks every command up for its short help.
LazyCommands = Mapping[str, tuple[str, str]]

_COMMANDS: LazyCommands = {
    "admin": ("attest.cli.admin", "admin"),
    "agent": ("attest.cli.agent", "agent"),
    "audit": ("attest.cli.audit", "audit"),
    "authorize": ("attest.cli.authorize", "authorize"),
    "challenge": ("attest.cli.verifier", "challenge"),
    "docs": ("attest.cli.docs", "docs"),
    "ek": ("attest.cli.ek", "ek"),
    "enroll": ("attest.cli.verifier", "enroll"),
    "eventlog": ("attest.cli.eventlog", "eventlog"),
    "key": ("attest.cli.key", "key"),
    "measure": ("attest.cli.measure", "measure"),
    "pcr": ("attest.cli.pcr", "pcr"),
    "policy": ("attest.cli.policy", "policy"),
    "provision": ("attest.cli.provision", "provision"),
    "quote": ("attest.cli.quote", "quote"),
    "readmit": ("attest.cli.verifier", "readmit"),
    "result": ("attest.cli.result", "result"),
    "replicas": ("attest.cli.replicas", "replicas"),
    "revoke": ("attest.cli.verifier", "revoke"),
    "run": ("attest.cli.run", "run"),
    "serve": ("attest.cli.serve", "serve"),
    "sign": ("attest.cli.sign", "sign"),
    "swtpm": ("attest.cli.swtpm", "swtpm"),
    "verify": ("attest.cli.verifier", "verify"),
    "verify-signature": ("attest.cli.verify_signature", "verify_signature"),
}


def _attribute(module: str, name: str) -> click.Command:
    found = getattr(importlib.import_module(module), name)
    if not isinstance(found, click.Command):
        raise TypeError(f"{module}.{name} is not a click command")
    return found


def _needs_tss(name: str, missing: TSSUnavailable) -> click.Command:
    """A host-side command on a verifier-only install (no tpm2-pytss): still listed by
    --help, and exit 3 with the install hint when run, whatever its arguments."""

    def fail() -> None:
        raise missing

    return click.Command(name, callback=fail, short_help="(host side: needs attest[host])",
                         add_help_option=False,
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})


class LazyGroup(click.Group):
    """A click group whose commands (``lazy_commands``) are imported when looked up."""

    def __init__(self, name: str | None = None,
                 commands: MutableMapping[str, click.Command] | Sequence[click.Command]
                 | None = None, *,
                 lazy_commands: LazyCommands | None = None, **attrs: Any) -> None:
        super().__init__(name, commands, **attrs)
        self.lazy_commands: LazyCommands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module, name = self.lazy_commands[cmd_name]
            try:
                command = _attribute(module, name)
            except TSSUnavailable as exc:
                command = _needs_tss(cmd_name, exc)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


class AttestGroup(LazyGroup):
    """The top group: renders AttestError and anything unexpected without a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Kept for click's own usage errors, raised before --json's callback ran.
        ctx.meta[_ARGV] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AttestError as exc:
            report_error(ctx, exc)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as exc:
            if not _json_usage(ctx, exc):
                raise
            exc.show()
            report(ctx, Failure.of_click(exc), None)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # A path the user named that is not there or not theirs is usage (2); the
            # system failing a correct request (full disk, I/O error) is environment (3).
            ctx.exit(report_os_error(ctx, exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: say it, exit 1
            tss = _tss_failure(exc)
            if tss is not None:
                # A TPM call that bypassed TPM.call: still its code in words, exit 1 or 3.
                report_error(ctx, tss)
                ctx.exit(tss.exit_code)
            if os.environ.get("ATTEST_DEBUG"):
                traceback.print_exc()
            hint = "this is a bug in attest; run again with ATTEST_DEBUG=1 and report the traceback"
            report(ctx, Failure(EXIT_REFUSED, f"internal error: {type(exc).__name__}: {exc}",
                                "internal_error", hint),
                   f"internal error: {type(exc).__name__}: {visible(exc)}\nhint: {hint}")
            ctx.exit(EXIT_REFUSED)
        return None


_ARGV = "attest.argv"


def _tss_failure(exc: Exception) -> AttestError | None:
    """A tpm2-pytss TSS2_Exception as the TPMError attest.tpm would have made of it.

    Only once tpm2-pytss was imported by a command: the verifier side runs without it,
    and then no TSS2_Exception can have been raised."""
    pytss = sys.modules.get("tpm2_pytss")
    if pytss is None or not isinstance(exc, pytss.TSS2_Exception):
        return None
    from attest.tpm.device import tpm_error

    return tpm_error(exc, "a TPM command")


def _json_usage(ctx: click.Context, exc: click.ClickException) -> bool:
    """Whether a click usage error is to be JSON too: the failing command takes --json
    and it was given (before any `--`)."""
    if ctx.meta.get(JSON_FLAG):
        return True
    failing = getattr(exc, "ctx", None)
    if failing is None or not any("--json" in p.opts for p in failing.command.params):
        return False
    argv: list[str] = ctx.meta.get(_ARGV, [])
    own = argv[:argv.index("--")] if "--" in argv else argv
    if "--json" in own:
        ctx.meta[JSON_FLAG] = True
        return True
    return False


@click.group(cls=AttestGroup, context_settings={"help_option_names": ["-h", "--help"]},
             lazy_commands=_COMMANDS)
@click.version_option(__version__, prog_name="attest")
@click.option("--tcti", metavar="TCTI", help="TPM to talk to, e.g. swtpm:path=/tmp/s.sock or "
              "device:/dev/tpmrm0. Default: $ATTEST_TCTI, $TPM2TOOLS_TCTI, device:/dev/tpmrm0.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the host identity and keys. "
              "Default: $ATTEST_HOME, else $XDG_STATE_HOME/attest, else "
              "~/.local/state/attest (an existing one wins over a new XDG home).")
@click.option("-v", "--verbose", count=True, expose_value=False, is_eager=True,
              # While the arguments are parsed: before the command's module is looked up
              # and imports the TSS, whose log level is fixed when it first logs.
              callback=lambda ctx, param, value: verbosity.configure(value),
              help="Say more on stderr: -v what attest does, -vv its debugging detail, "
              "-vvv the TSS's too (libtss2's log, unless $TSS2_LOG is set).")
@click.pass_context
def cli(ctx: click.Context, tcti: str | None, home: Path | None) -> None:
    """Attestation and a TPM-backed signer: execution conditional on proof.

    \b
    Start here on a machine without a TPM:
      export ATTEST_TCTI=$(attest swtpm start --state ./.attest/swtpm)
      attest provision
      attest key create
      attest quote create --pcrs sha256:0,1,15 --nonce 00112233 --out-dir ./quote

    \b
    `attest COMMAND --help` for a command's options; `attest docs` for the
    documentation (`attest docs install`: extras and shell completion).
    """
    # Whether PCR 15 is shared with systemd's log (not for a simulator) follows the TPM
    # this command talks to: --tcti when given, not an ATTEST_TCTI left set.
    tctiuse.command_tcti = tcti
    ctx.obj = Context(tcti=tcti, home=resolve_home(home))
    if is_terminal(sys.stderr):
        # Long work draws a progress line on a terminal only: a pipe or a log stays clean.
        ctx.with_resource(progress.shown_on(TerminalProgress(sys.stderr)))


def main() -> None:
    # `attest audit export | head`: stop quietly when the reader goes away, as Unix
    # tools do, instead of reporting a broken pipe.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        cli.main(prog_name="attest", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        # click uses 2 for usage errors already; keep every other code as given.
        sys.exit(code if isinstance(code, int) else EXIT_USAGE)


if __name__ == "__main__":
    main()
