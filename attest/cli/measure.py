"""`attest measure`: extend the runtime PCR and log what was measured."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from attest.cli.common import echo_json, pcr_index, tpm_from
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import EventLogError, UsageError
from attest.host.runtime import subjects
from attest.host.runtime.log import measure as measure_into
from attest.host.runtime.log import runtime_pcr
from attest.tpm.pcr import active_banks

_PCR = click.option("--pcr", metavar="PCR", default=None, callback=pcr_index,
                    help="Runtime PCR [default: $ATTEST_RUNTIME_PCR or 15]. Quoted and appraised, "
                    "never sealed: every measurement changes it.")
_RESETTABLE = click.option("--allow-resettable", is_flag=True,
                           help="Accept PCR 16 or 23, which software can reset (and so replay a "
                           "clean history).")
_JSON = json_option(help="Print the record as JSON.")


@click.group()
def measure() -> None:
    """Measure into the runtime PCR and append the record to the runtime log.

    \b
    The log ($ATTEST_HOME/runtime.cel) is CEL-JSON, as systemd writes its own;
    `attest eventlog check` replays it against the TPM.
    """


def _run(ctx: click.Context, pcr: int | None, allow_resettable: bool, as_json: bool,
         build: Callable[[Sequence[str]], dict[str, Any]]) -> None:
    index = runtime_pcr(pcr, allow_resettable=allow_resettable)
    with tpm_from(ctx) as tpm:
        try:
            content = build(active_banks(tpm))
        except EventLogError as exc:
            # What the caller asked to measure cannot be a record (no name, a name or path
            # that is not UTF-8 text, too large): the caller's input, not evidence.
            raise UsageError(f"cannot measure that: {exc.message}", hint=exc.hint) from None
        record, done = measure_into(tpm, ctx.obj.home, index, content)
    for note in done.notes:
        click.echo(f"repaired: {visible(note)}", err=True)
    for note in done.copied:
        click.echo(visible(note), err=True)
    if as_json:
        from attest.eventlog.cel import record_json

        echo_json(record_json(record))
        return
    digest = record.digests.get("sha256") or next(iter(record.digests.values()))
    click.echo(f"measured {content['type']} {visible(content['name'])} into PCR {index} "
               f"(record {record.recnum}, extended {digest.hex()})")


@measure.command("file")
@click.argument("path", type=click.Path(path_type=Path))
@_PCR
@_RESETTABLE
@_JSON
@click.pass_context
def file_cmd(ctx: click.Context, path: Path, pcr: int | None, allow_resettable: bool,
             as_json: bool) -> None:
    """Measure a file's contents."""
    _run(ctx, pcr, allow_resettable, as_json, lambda banks: subjects.file_content(path, banks))


@measure.command("command", context_settings={"ignore_unknown_options": True})
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@_PCR
@_RESETTABLE
@_JSON
@click.option("--record-argv", is_flag=True,
              help="Also write the arguments themselves into the log (by default only their "
              "digest: the log rides in every later artifact to every verifier).")
@click.pass_context
def command_cmd(ctx: click.Context, argv: tuple[str, ...], pcr: int | None,
                allow_resettable: bool, as_json: bool, record_argv: bool) -> None:
    """Measure a command about to run: its executable's digest and its argument vector's.

    \b
      attest measure command -- /usr/bin/backup --full /srv
    """
    _run(ctx, pcr, allow_resettable, as_json,
         lambda banks: subjects.command_content(list(argv), banks, record_argv=record_argv))


@measure.command("data")
@click.option("--name", required=True, help="What the value is, e.g. config.version.")
@click.option("--value", required=True, help="The value (text) to measure.")
@_PCR
@_RESETTABLE
@_JSON
@click.option("--record-value", is_flag=True,
              help="Also write the value itself into the log (by default only its digest: the "
              "log rides in every later artifact to every verifier).")
@click.pass_context
def data_cmd(ctx: click.Context, name: str, value: str, pcr: int | None, allow_resettable: bool,
             as_json: bool, record_value: bool) -> None:
    """Measure a named piece of data (the log keeps its digest, not the value)."""
    _run(ctx, pcr, allow_resettable, as_json,
         lambda banks: subjects.data_content(name, value, banks, record_value=record_value))
