"""`attest admin`: the service's administrators (bearer tokens for its admin API)."""

from __future__ import annotations

import time

import click

from attest import timetext
from attest.cli.common import echo_json, utf8_text
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.cli.verifier import open_store

_STORE = click.option("--store", "store_url", metavar="URL",
                      help="The verifier's store [default: $ATTEST_STORE, else "
                      "sqlite:///$ATTEST_HOME/verifier.db].")


@click.group()
def admin() -> None:
    """Administer the verifier service (`attest serve`)."""


@admin.group()
def token() -> None:
    """Bearer tokens for the service's admin API (revocations, hosts, audit entries)."""


@token.command("create")
@click.option("--name", default="admin", show_default=True,
              help="Who or what holds the token; recorded, and named in the audit log.")
@_STORE
@json_option(help='Print {"id", "name", "created_at", "token"}.')
@click.pass_context
def create(ctx: click.Context, name: str, store_url: str | None, as_json: bool) -> None:
    """Make a token and print it ONCE: the store keeps only its SHA-256.

    \b
    Send it as `Authorization: Bearer TOKEN`; keep it like a password.
    """
    from attest.store import tokens

    name = utf8_text(name, "--name")
    with open_store(ctx, store_url) as store:
        info, secret = tokens.create(store, name, int(time.time()))
    if as_json:
        echo_json({**info.to_json(), "token": secret})
        return
    click.echo(secret)
    click.echo(f"attest: token {info.id} for {visible(info.name)}: shown once, only its hash "
               "is stored", err=True)


@token.command("list")
@_STORE
@json_option(help='Print [{"id", "name", "created_at", "revoked_at"}].')
@click.pass_context
def list_tokens(ctx: click.Context, store_url: str | None, as_json: bool) -> None:
    """List the tokens (never their secrets), revoked ones too."""
    from attest.store import tokens

    with open_store(ctx, store_url) as store:
        found = tokens.listed(store)
    if as_json:
        echo_json([t.to_json() for t in found])
        return
    for t in found:
        state = "in force" if t.revoked_at is None else f"revoked {timetext.iso(t.revoked_at)}"
        click.echo(f"{t.id}  {visible(t.name)}  created {timetext.iso(t.created_at)}  {state}")


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@_STORE
@json_option(help='Print {"id", "revoked"}.')
@click.pass_context
def revoke(ctx: click.Context, token_id: str, store_url: str | None, as_json: bool) -> None:
    """Revoke the token with ID (`attest admin token list`): refused from now on."""
    from attest.errors import UsageError
    from attest.store import tokens

    with open_store(ctx, store_url) as store:
        revoked = tokens.revoke(store, token_id.strip().lower(), int(time.time()))
    if not revoked:
        raise UsageError(f"no token in force has the id {token_id[:40]!r}",
                         hint="`attest admin token list` shows them")
    if as_json:
        echo_json({"id": token_id, "revoked": True})
    else:
        click.echo(f"revoked token {visible(token_id)}")


