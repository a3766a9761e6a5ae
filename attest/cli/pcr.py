"""`attest pcr`: read and extend PCRs."""

from __future__ import annotations

import click

from attest.cli.common import echo_json, parse_hex, parse_selection, pcr_index, tpm_from
from attest.cli.failure import json_option
from attest.errors import UsageError
from attest.evidence.pcrs import DIGEST_SIZES, PCR_COUNT, RESETTABLE_PCRS, PCRSelection, hash_name
from attest.host.runtime.log import runtime_pcr
from attest.tpm.pcr import extend, extend_data, read_pcrs


@click.group()
def pcr() -> None:
    """Read and extend Platform Configuration Registers."""


@pcr.command()
@click.option("--bank", default="sha256", show_default=True,
              help="The bank of a SELECTION written without one (0-7 reads as sha256:0-7).")
@click.argument("selections", nargs=-1, metavar="[SELECTION]...")
@json_option(help='Print {"sha256": {"0": "<hex>", ...}} (one object per bank).')
@click.pass_context
def read(ctx: click.Context, bank: str, selections: tuple[str, ...], as_json: bool) -> None:
    """Print PCR values: every PCR of --bank when no SELECTION is given.

    \b
    A SELECTION is written as every --pcrs option takes it (BANK:LIST, banks joined
    by +), or as a LIST alone in --bank:
      attest pcr read sha256:0-7,15
      attest pcr read sha256:0-7+sha1:0
      attest pcr read 0 1 15
    """
    selection = pcr_arguments(selections, bank)
    with tpm_from(ctx) as tpm:
        values = read_pcrs(tpm, selection)
    if as_json:
        out: dict[str, dict[str, str]] = {}
        for name, index in selection:
            out.setdefault(name, {})[str(index)] = values[(name, index)].hex()
        echo_json(out)
        return
    for name, indices in selection.banks:
        click.echo(f"{name}:")
        for index in indices:
            click.echo(f"  {index:>2} : 0x{values[(name, index)].hex().upper()}")


def pcr_arguments(selections: tuple[str, ...], bank: str) -> PCRSelection:
    """The selection `pcr read`'s arguments name: each BANK:LIST, or a LIST in ``bank``;
    every PCR of ``bank`` when there are none."""
    name = hash_name(bank)
    if not selections:
        return PCRSelection.of({name: range(PCR_COUNT)})
    parts = [text if ":" in text else f"{name}:{text}" for text in selections]
    return parse_selection("+".join(parts))


@pcr.command("extend")
@click.argument("index", metavar="PCR", callback=pcr_index)
@click.option("--data", help="Text whose hash is extended into every active bank.")
@click.option("--digest", "digest_spec", metavar="BANK:HEX",
              help="A digest to extend as is, e.g. sha256:<64 hex digits>.")
@json_option(help='Print {"ok", "pcr", "extended": {"sha256": "<hex>", ...}}.')
@click.pass_context
def extend_cmd(ctx: click.Context, index: int, data: str | None, digest_spec: str | None,
               as_json: bool) -> None:
    """Extend PCR INDEX with the hash of --data or with --digest."""
    if (data is None) == (digest_spec is None):
        raise UsageError("give exactly one of --data and --digest")
    if not 0 <= index < PCR_COUNT:
        raise UsageError(f"PCR index {index} out of range 0-{PCR_COUNT - 1}")
    with tpm_from(ctx) as tpm:
        if digest_spec is None:
            # The argument's own bytes, UTF-8 or not (surrogateescape gives them back).
            raw = (data or "").encode("utf-8", "surrogateescape")
            digests = extend_data(tpm, index, raw)
        else:
            bank, sep, hexdigest = digest_spec.partition(":")
            if not sep:
                raise UsageError(f"malformed --digest {digest_spec!r}", hint="write sha256:<hex>")
            name = hash_name(bank)
            value = parse_hex(hexdigest, "--digest")
            if len(value) != DIGEST_SIZES[name]:
                raise UsageError(f"a {name} digest is {DIGEST_SIZES[name]} bytes, not {len(value)}")
            digests = {name: value}
            extend(tpm, index, digests)
    if as_json:
        echo_json({"ok": True, "pcr": index,
                   "extended": {name: value.hex() for name, value in digests.items()}})
    else:
        for name, value in digests.items():
            click.echo(f"extended PCR {index} ({name}) with {value.hex()}")
    if index == runtime_pcr(allow_resettable=True):
        click.echo(f"note: PCR {index} is attest's runtime PCR; a value extended outside "
                   "`attest measure` is one its log cannot explain", err=True)
    if index in RESETTABLE_PCRS:
        click.echo(f"note: PCR {index} can be reset from locality 0; do not rely on it for "
                   "measurements an attacker must not undo", err=True)
