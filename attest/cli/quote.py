"""`attest quote`: make a quote with the AK, in files tpm2_checkquote reads."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click

from attest.cli.common import (
    MAX_NONCE_BYTES,
    echo_json,
    parse_hex,
    parse_selection,
    tpm_from,
)
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.evidence.tpm2tools import write_serialized_pcrs
from attest.inputfile import MAX_KEY_BYTES, read_home_file


@click.group()
def quote() -> None:
    """Make TPM quotes of PCR state."""


@quote.command()
@click.option("--pcrs", required=True, metavar="BANK:LIST",
              help="PCRs to quote, e.g. sha256:0,1,15 (tpm2-tools syntax).")
@click.option("--nonce", required=True, metavar="HEX",
              help=f"Verifier challenge, hex, at most {MAX_NONCE_BYTES} bytes (qualifyingData).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for quote.msg, quote.sig, quote.pcrs, ak.pub (TPM2B_PUBLIC), "
              "ak.name, ak.pem and quote.json.")
@json_option(help="Print quote.json's object, with \"ok\" and \"out_dir\".")
@click.pass_context
def create(ctx: click.Context, pcrs: str, nonce: str, out_dir: Path, as_json: bool) -> None:
    """Quote PCRs with the AK.

    \b
    The files are the ones tpm2_checkquote reads:
      tpm2_checkquote -u ak.pub -m quote.msg -s quote.sig -f quote.pcrs -g sha256 -q NONCE
    ak.pub is the AK's TPM2B_PUBLIC, whose attributes show a restricted key to a
    verifier that knows the AK's name from enrollment (`attest quote verify --ak-name`;
    ak.name is the host's copy, no proof); ak.pem is the bare key, for tools that need one.
    """
    # Imported here: `quote verify` joins this group and runs without the TSS.
    from attest.tpm.files import write_public
    from attest.tpm.hierarchy import load_identity
    from attest.tpm.quote import create_quote

    selection = parse_selection(pcrs)
    qualifying = parse_hex(nonce, "--nonce", MAX_NONCE_BYTES)
    identity = load_identity(ctx.obj.home)
    with tpm_from(ctx) as tpm:
        made = create_quote(tpm, identity, selection, qualifying)
    ak_pem = read_home_file(ctx.obj.home / "ak.pem", "AK public key", MAX_KEY_BYTES)
    files = {
        "quote.msg": made.message,
        "quote.sig": made.signature,
        "quote.pcrs": write_serialized_pcrs(selection, made.pcr_values),
        "ak.pub": made.ak_public,  # TPM2B_PUBLIC: restriction shows under a known name
        "ak.name": identity.ak_name,  # the name's bytes, as tpm2_createak -n writes them
        "ak.pem": ak_pem,
    }
    values: dict[str, dict[str, str]] = {}
    for bank, index in selection:
        values.setdefault(bank, {})[str(index)] = made.pcr_values[(bank, index)].hex()
    summary = {
        "pcrs": str(selection),
        "nonce": qualifying.hex(),
        "message": base64.b64encode(made.message).decode(),
        "signature": base64.b64encode(made.signature).decode(),
        "ak_public": base64.b64encode(made.ak_public).decode(),
        "ak_name": identity.ak_name.hex(),
        "ak_pem": ak_pem.decode(),
        "pcr_values": values,
    }
    files["quote.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    for name, data in files.items():
        write_public(out_dir / name, data)
    if as_json:
        echo_json({"ok": True, "out_dir": str(out_dir), **summary})
        return
    shown, nonce = visible(out_dir), qualifying.hex()
    click.echo(f"quoted {selection} with nonce {nonce} into {shown}/")
    click.echo(f"check it: tpm2_checkquote -u {shown}/ak.pub -m {shown}/quote.msg "
               f"-s {shown}/quote.sig -f {shown}/quote.pcrs -g sha256 -q {nonce}")
    click.echo(f"or: attest quote verify -u {shown}/ak.pub --ak-name {identity.ak_name.hex()} "
               f"-m {shown}/quote.msg -s {shown}/quote.sig -f {shown}/quote.pcrs "
               f"-g sha256 -q {nonce}")
