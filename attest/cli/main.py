"""The `attest` command: parse input, call the library, render output.

Exit codes: 0 ok, 1 refused or invalid, 2 bad usage or input, 3 environment
(no TPM, simulator not running, tool missing). No traceback reaches a user;
ATTEST_DEBUG=1 shows one for a bug report.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import click

from attest import __version__
from attest.errors import EXIT_REFUSED, EXIT_USAGE, AttestError


@dataclass
class Context:
    tcti: str | None
    home: Path


class AttestGroup(click.Group):
    """A click group that renders AttestError and anything unexpected without a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AttestError as exc:
            click.echo(f"error: {exc.diagnostics()}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except OSError as exc:
            # A file the user named (or the home) cannot be read or written.
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: say it, exit 1
            if os.environ.get("ATTEST_DEBUG"):
                traceback.print_exc()
            click.echo(f"internal error: {type(exc).__name__}: {exc}\n"
                       "hint: this is a bug in attest; run again with ATTEST_DEBUG=1 and "
                       "report the traceback", err=True)
            ctx.exit(EXIT_REFUSED)
        return None


@click.group(cls=AttestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attest")
@click.option("--tcti", metavar="TCTI", help="TPM to talk to, e.g. swtpm:path=/tmp/s.sock or "
              "device:/dev/tpmrm0. Default: $ATTEST_TCTI, $TPM2TOOLS_TCTI, device:/dev/tpmrm0.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the host identity and keys. "
              "Default: $ATTEST_HOME or ~/.local/state/attest.")
@click.pass_context
def cli(ctx: click.Context, tcti: str | None, home: Path | None) -> None:
    """Attestation and a TPM-backed signer: execution conditional on proof.

    \b
    Start here on a machine without a TPM:
      export ATTEST_TCTI=$(attest swtpm start --state ./.attest/swtpm)
      attest provision
      attest key create
      attest quote create --pcrs sha256:0,1,15 --nonce 00112233 --out-dir ./quote
    """
    from attest.tpm.device import resolve_home

    ctx.obj = Context(tcti=tcti, home=resolve_home(home))


@click.group()
def ek() -> None:
    """Endorsement key certificates."""


def _register() -> None:
    from attest.cli import (
        authorize,
        eventlog,
        evidence,
        keys,
        measure,
        pcr,
        provision,
        quote,
        run,
        swtpm,
        verifier,
    )

    quote.quote.add_command(evidence.quote_verify)
    keys.policy.add_command(evidence.policy_pcr)
    ek.add_command(evidence.ek_verify)
    cli.add_command(ek)
    cli.add_command(swtpm.swtpm)
    cli.add_command(provision.provision)
    cli.add_command(pcr.pcr)
    cli.add_command(quote.quote)
    cli.add_command(keys.key)
    cli.add_command(keys.policy)
    cli.add_command(eventlog.eventlog)
    cli.add_command(measure.measure)
    cli.add_command(authorize.authorize)
    cli.add_command(verifier.verify)
    cli.add_command(run.run)
    cli.add_command(verifier.challenge)
    cli.add_command(verifier.revoke)
    cli.add_command(verifier.enroll)
    keys.policy.add_command(verifier.policy_init)


_register()


def main() -> None:
    try:
        cli.main(prog_name="attest", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        # click uses 2 for usage errors already; keep every other code as given.
        sys.exit(code if isinstance(code, int) else EXIT_USAGE)


if __name__ == "__main__":
    main()
