"""`attest agent`: the resident host agent (attest.host.agent.server)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from attest.cli.common import tpm_from
from attest.ear.keys import trusted
from attest.host.agent.server import Agent, default_socket, listening, serve
from attest.host.agent.stops import StopLog
from attest.host.agent.supervisor import Supervisor
from attest.host.http import check_verifier_url
from attest.host.run import Remote


@click.command()
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to listen [default: $ATTEST_HOME/agent.sock]; `attest run` finds "
              "it there (or at $ATTEST_AGENT_SOCKET).")
@click.option("--verifier", "verifier_url", required=True, metavar="URL",
              help="The verifier service that decides (as `attest run --verifier`).")
@click.option("--verifier-key", "verifier_keys", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A PEM public key whose signed results are trusted; repeatable "
              "[default: $ATTEST_HOME/verifier-keys/*.pem].")
@click.option("--cacert", type=click.Path(dir_okay=False, path_type=Path),
              help="With an https --verifier: the CA certificate(s) of its server.")
@click.option("--insecure", is_flag=True,
              help="Allow plain http to a verifier on another machine.")
@click.option("--group", "group_name", metavar="GROUP",
              help="Let this group's members use the agent too (socket 0660 in it); "
              "their runs are in their own user's name.")
@click.option("--interval", default=None, metavar="DURATION",
              help="Periodic reports to the verifier: not yet available (refused).")
@click.pass_context
def agent(ctx: click.Context, socket_path: Path | None, verifier_url: str,
          verifier_keys: tuple[Path, ...], cacert: Path | None, insecure: bool,
          group_name: str | None, interval: str | None) -> None:
    """Hold the TPM and authorize `attest run` for this user over a unix socket.

    \b
    The socket is 0600; only this user and root may use it (the peer's uid is
    checked on every connection), and --group's members when given. `attest run
    -- CMD` then asks the agent instead of opening the TPM, and execs the sealed
    copy the agent measured; `attest run --supervise -- CMD` also has the agent
    stop CMD (SIGTERM, then SIGKILL after the grace) when its authorization stops
    holding, each stop in the audit log. Stop the agent with SIGTERM or Ctrl-C: its
    supervised runs stop with it; a plain `attest run` is then refused (give it
    --verifier or --policy to open the TPM itself).
      attest agent --verifier https://verifier.example/ --verifier-key v.pem
    """
    from attest.errors import UsageError

    if interval is not None:
        # The push of reports waits for the verifier's /v1/reports (issue 14, engineer A):
        # see attest.host.agent.server.Agent.report_due, the hook it will fill.
        raise UsageError("--interval: periodic reports are not implemented yet")
    check_verifier_url(verifier_url, insecure=insecure)
    remote = Remote(verifier_url, trusted(ctx.obj.home, verifier_keys), cacert=cacert,
                    insecure=insecure)
    group = None
    if group_name is not None:
        import grp

        try:
            group = grp.getgrnam(group_name).gr_gid
        except KeyError:
            raise UsageError(f"--group {group_name}: no such group") from None
    path = socket_path or default_socket(ctx.obj.home)
    stop: list[int] = []

    def stopping(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    stops = StopLog(ctx.obj.home)
    supervisor = Supervisor(stops)  # `attest run --supervise`; its triggers wire in here
    try:
        with tpm_from(ctx) as tpm, listening(path, group) as server:
            click.echo(f"attest agent: listening on {path}", err=True)
            serve(Agent(tpm, ctx.obj.home, remote, group, supervisor), server,
                  lambda: bool(stop))
    finally:
        # Nobody supervises the supervised runs once the agent is gone: they stop too
        # (fail closed), within their grace.
        supervisor.close("host_stale", "the agent stopped: nothing supervises this run")
        stops.close()
    click.echo("attest agent: stopped", err=True)
