"""`attest eventlog`: replay and show measurement logs (boot and runtime).

A log that does not parse exits 1 with eventlog_malformed (EventLogError: a log is
evidence, refused, not bad usage); a file that cannot be opened exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from attest.cli.common import read_input
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.eventlog.cel import CelRecord, describe_content
from attest.eventlog.content import describe
from attest.eventlog.logfile import FORMATS, MeasurementLog, parse_log
from attest.eventlog.replay import hex_banks, replay
from attest.eventlog.tcg import TcgEvent
from attest.reasons import Reason

_FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
    help="tcg: a PC Client boot log (binary_bios_measurements); cel: a CEL-JSON runtime "
         "log (JSON-SEQ, as in /run/log/systemd/tpm2-measure.log); auto: tell by the bytes.")


@click.group()
def eventlog() -> None:
    """Replay and show measurement logs: TCG boot logs and CEL runtime logs."""


@eventlog.command("replay")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_FORMAT_OPTION
@json_option(
              help='Print {"sha256": {"0": "<hex>", ...}, "sha1": {...}}.')
def replay_cmd(file: Path, fmt: str, as_json: bool) -> None:
    """Print the PCR values FILE replays to, for every PCR it extends."""
    values = hex_banks(replay(_load(file, fmt).events))
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    if not values:
        click.echo("the log extends no PCR")
    for bank, pcrs in values.items():
        click.echo(f"{bank}:")
        for pcr, value in pcrs.items():
            click.echo(f"  {pcr:>2} : {value}")


@eventlog.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_FORMAT_OPTION
@json_option(help="Print a JSON list of events.")
def show(file: Path, fmt: str, as_json: bool) -> None:
    """Print the events of FILE: index, PCR, type, digest and what each records."""
    log = _load(file, fmt)
    rows = [_row(event) for event in log.events]
    if as_json:
        # ensure_ascii: descriptions come from the log; escaped, not raw, on a terminal.
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'#':>4}  {'PCR':>3}  {'type':<34} {'digest':<20} description")
    for row in rows:
        pcr = "-" if row["pcr"] is None else str(row["pcr"])
        click.echo(f"{row['index']:>4}  {pcr:>3}  {visible(row['type']):<34} "
                   f"{visible(_display_digest(row['digests'])):<20} "
                   f"{visible(row['description'])}")


def _load(file: Path, fmt: str) -> MeasurementLog:
    return parse_log(read_input(file, "log", evidence=Reason.EVENTLOG_MALFORMED), fmt)


def _row(event: TcgEvent | CelRecord) -> dict[str, object]:
    digests = {bank: value.hex() for bank, value in event.digests.items()}
    if isinstance(event, TcgEvent):
        return {"index": event.index, "pcr": event.pcr, "type": event.type_name,
                "extends": event.extends, "digests": digests, "description": describe(event)}
    return {"index": event.recnum if event.recnum is not None else event.index,
            "pcr": event.pcr, "type": event.content_type, "extends": event.extends,
            "digests": digests, "description": describe_content(event)}


def _display_digest(digests: object) -> str:
    # The table shows one digest, shortened; --json has them all in full.
    if not isinstance(digests, dict) or not digests:
        return "-"
    bank = "sha256" if "sha256" in digests else next(iter(digests))
    return f"{bank}:{str(digests[bank])[:12]}"


@eventlog.command()
@click.option("--log", "logs", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Another log to replay with the default ones (repeatable; boot and "
              "runtime logs are replayed together). The defaults: the runtime log in the "
              "home, and the boot log (/sys/kernel/security/tpm0/binary_bios_measurements "
              "or $ATTEST_BOOT_LOG) when present. A log given twice is replayed once; "
              "systemd's shared log adds only its records for other PCRs (those for "
              "the runtime PCR are in the runtime log already).")
@click.option("--only-logs", is_flag=True,
              help="Replay only the --log files, not the default logs (nothing is copied "
              "from systemd's log or repaired).")
@click.option("--repair", is_flag=True,
              help="Finish what a crash of `attest measure` left (an incomplete last record, "
              "or a record never extended); never touches any other disagreement.")
@json_option(help="Machine-readable result.")
@click.pass_context
def check(ctx: click.Context, logs: tuple[Path, ...], only_logs: bool, repair: bool,
          as_json: bool) -> None:
    """Replay the host's logs and compare them with the TPM's PCRs; exit 1 on a mismatch.

    When the runtime PCR is shared with systemd, this first copies into the runtime log
    the records systemd extended since attest last read its log (a write even without
    --repair: without them the log cannot explain the PCR), as every `attest measure`
    does. See `attest docs measurement`.
    """
    from attest.cli.common import echo_json, tpm_from
    from attest.errors import UsageError
    from attest.host.runtime.check import check_logs, default_boot_log, distinct_logs
    from attest.host.runtime.log import RuntimeLog, log_pcr, reconcile, runtime_pcr

    if only_logs and not logs:
        raise UsageError("--only-logs needs at least one --log FILE")
    if only_logs and repair:
        raise UsageError("--repair works on the runtime log in the home, not with --only-logs")
    notes: list[str] = []
    copied: list[str] = []
    defaults: list[Path] = []
    runtime_index: int | None = None  # with --only-logs: the PCR the CEL logs extend
    shared: Path | None = None
    with tpm_from(ctx) as tpm:
        if not only_logs:
            runtime = RuntimeLog(ctx.obj.home)
            with runtime.locked():
                # An empty or missing log is reconciled too: it explains only a runtime
                # PCR at its reset value.
                found = log_pcr(runtime.read(allow_torn_tail=True).records)
                pcr = runtime_pcr(allow_resettable=True) if found is None else found
                # The whole log, never from the checkpoint (a host-side hint): a check
                # replays every record.
                done = reconcile(tpm, runtime, pcr, repair=repair, full=True)
                notes, copied = done.notes, done.copied
                runtime_index = pcr
                if runtime.systemd is not None:
                    shared = runtime.systemd.path
            if runtime.path.exists():
                defaults.append(runtime.path)
            boot = default_boot_log()
            if boot is not None:
                defaults.append(boot)
        files = distinct_logs(defaults, logs)
        # With no file at all, the runtime PCR is still checked (at its reset value).
        # systemd's shared log given with --log: its records for the runtime PCR are
        # in the runtime log already, and would replay twice.
        checked = check_logs(tpm, files, runtime=runtime_index, shared=shared)
    if as_json:
        echo_json({"ok": True, "logs": [str(p) for p, _ in checked.logs], "repaired": notes,
                   "copied": copied,
                   "verified": [f"{b}:{i}" for b, i in checked.facts.verified]})
        return
    for note in notes:
        click.echo(f"repaired: {visible(note)}")
    for note in copied:
        click.echo(visible(note))
    for path, log in checked.logs:
        click.echo(f"{visible(path)}: {len(log.events)} {log.format} events")
    pcrs = ", ".join(f"{b}:{i}" for b, i in checked.facts.verified) or "none"
    click.echo(f"ok: the logs explain PCRs {pcrs}")
