"""`attest provision`: the host's TPM identity."""

from __future__ import annotations

from pathlib import Path

import click

from attest.certfiles import certificate_files
from attest.cli.common import echo_json, read_input, tpm_from
from attest.cli.failure import json_option
from attest.tpm.hierarchy import provision as provision_identity


@click.command(short_help="Check the EK, create or reuse SRK and AK; save identity.")
@click.option("--ek-roots", "ek_roots", multiple=True, metavar="PATH",
              type=click.Path(exists=True, path_type=Path),
              help="Manufacturer roots (and intermediates) the EK certificates must chain to: "
              "a certificate file or a folder of them. Repeatable. For a simulator started by "
              "attest: STATE/ca.")
@click.option("--replace-identity", is_flag=True,
              help="The TPM lost the home's AK (cleared, evicted) or belongs to another home: "
              "create or adopt this TPM's AK, keeping the old identity as "
              "identity.json.replaced-*.")
@json_option(help="Machine-readable output.")
@click.pass_context
def provision(ctx: click.Context, ek_roots: tuple[Path, ...], replace_identity: bool,
              as_json: bool) -> None:
    """Check the EK against its certificate (and its chain with --ek-roots), create or reuse
    SRK and AK, write the identity.

    Idempotent: a second run reuses what exists and says so.
    """
    roots = [read_input(p, "root") for r in ek_roots for p in certificate_files(r)]
    with tpm_from(ctx) as tpm:
        report = provision_identity(tpm, ctx.obj.home, ek_roots=roots, replace=replace_identity)
    ident = report.identity
    if as_json:
        echo_json({
            "home": str(ctx.obj.home),
            "steps": [{"component": c, "result": r} for c, r in report.steps],
            "ak_name": ident.ak_name.hex(),
            "eks": [{"kind": ek.kind, "name": ek.name.hex()} for ek in ident.eks],
        })
        return
    for component, result in report.steps:
        click.echo(f"{component:<22} {result}")
    click.echo(f"AK name: {ident.ak_name.hex()}")
    if not report.changed:
        click.echo("already provisioned: nothing created")
