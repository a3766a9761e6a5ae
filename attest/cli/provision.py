"""`attest provision`: the host's TPM identity."""

from __future__ import annotations

import click

from attest.cli.common import echo_json, tpm_from
from attest.tpm.hierarchy import provision as provision_identity


@click.command(short_help="Check the EK, create or reuse SRK and AK, write the identity.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def provision(ctx: click.Context, as_json: bool) -> None:
    """Check the EK against its certificate, create or reuse SRK and AK, write the identity.

    Idempotent: a second run reuses what exists and says so.
    """
    with tpm_from(ctx) as tpm:
        report = provision_identity(tpm, ctx.obj.home)
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
