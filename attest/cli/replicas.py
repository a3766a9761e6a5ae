"""`attest replicas`: the verifier replicas serving on a store, from their heartbeats."""

from __future__ import annotations

import json
import time

import click

from attest import timetext
from attest.cli.common import parse_duration
from attest.cli.failure import json_option
from attest.cli.terminal import visible


@click.command("replicas")
@click.option("--store", "store_url", metavar="URL",
              help="The verifier's store [default: $ATTEST_STORE, else "
              "sqlite:///$ATTEST_HOME/verifier.db].")
@click.option("--stale-after", default="15s", show_default=True, metavar="DURATION",
              help="A replica not seen for this long is listed as stale (three beats of "
              "`attest serve`'s default 5 s heartbeat).")
@json_option()
@click.pass_context
def replicas(ctx: click.Context, store_url: str | None, stale_after: str,
             as_json: bool) -> None:
    """List the `attest serve` processes that write heartbeats to the store.

    \b
    A stale replica died, hangs, or cannot reach the database; a replica that stopped
    cleanly removed its row. Exit 0 when the store answers (whatever the replicas' state),
    3 when it does not.
      attest replicas --store postgresql://attest@db.internal/attest
    """
    from attest.cli.verifier import open_store
    from attest.store import replicas as rows

    after = parse_duration(stale_after, "--stale-after")
    with open_store(ctx, store_url) as store:
        listed = rows.listed(store)
    now = int(time.time())
    if as_json:
        click.echo(json.dumps({"ok": True, "replicas": [r.to_json(now, after) for r in listed]}))
        return
    if not listed:
        click.echo("no replica has a heartbeat in this store")
        return
    for replica in listed:
        state = "STALE" if replica.stale(now, after) else "live"
        # Host names and versions come from the database: whoever writes it chose them.
        click.echo(f"{visible(replica.replica)}  {state:5}  host {visible(replica.host)}  pid "
                   f"{replica.pid}  seen {now - replica.last_seen}s ago  up since "
                   f"{timetext.iso(replica.started_at)}"
                   f"  attest {visible(replica.attest_version)}")
