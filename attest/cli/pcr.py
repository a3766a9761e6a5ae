"""`attest pcr`: read and extend PCRs."""

from __future__ import annotations

import click

from attest.cli.common import echo_json, parse_hex, tpm_from
from attest.cli.failure import json_option
from attest.errors import UsageError
from attest.evidence.pcrs import DIGEST_SIZES, PCR_COUNT, RESETTABLE_PCRS, PCRSelection, hash_name
from attest.host.runtime.log import runtime_pcr
from attest.tpm.pcr import extend, extend_data, read_pcrs


@click.group()
def pcr() -> None:
    """Read and extend Platform Configuration Registers."""


@pcr.command()
@click.option("--bank", default="sha256", show_default=True, help="PCR bank (hash algorithm).")
@click.argument("indices", nargs=-1, type=int)
@json_option(help='Print {"sha256": {"0": "<hex>", ...}}.')
@click.pass_context
def read(ctx: click.Context, bank: str, indices: tuple[int, ...], as_json: bool) -> None:
    """Print PCR values (all 24 when no PCR is named)."""
    name = hash_name(bank)
    selection = PCRSelection.of({name: indices or range(PCR_COUNT)})
    with tpm_from(ctx) as tpm:
        values = read_pcrs(tpm, selection)
    if as_json:
        echo_json({name: {str(i): values[(name, i)].hex() for _, i in selection}})
        return
    click.echo(f"{name}:")
    for _, index in selection:
        click.echo(f"  {index:>2} : 0x{values[(name, index)].hex().upper()}")


@pcr.command("extend")
@click.argument("index", type=int)
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
