"""`attest agent`: the resident host agent (attest.host.agent.server)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from attest.cli.common import tpm_from
from attest.ear.keys import trusted
from attest.host.agent.server import Agent, default_socket, listening, serve
from attest.host.agent.stops import StopLog
from attest.host.agent.supervisor import Supervisor
from attest.host.http import check_verifier_url
from attest.host.run import Remote

if TYPE_CHECKING:
    from attest.host.agent.reporting import AgentTrust, Reporter


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
              help="Push a report (a fresh quote and the runtime log since the last "
              "accepted one) to the verifier's /v1/reports this often: 500ms, 2s, 1m "
              "(0.2 s to 1 h). Without it, no reports.")
@click.option("--max-silence", default=None, metavar="DURATION",
              help="With --interval: how long without an accepted report counts as "
              "stale (trust lost); the verifier's report_max_age, once said, only "
              "shortens it [default: 3 intervals].")
@click.option("--report-key", default="default", show_default=True, metavar="NAME",
              help="With --interval: the signing key reports are issued with.")
@click.option("--sign-window", default="10ms", show_default=True, metavar="DURATION",
              help="How long `attest sign` through the agent waits for other requests "
              "to share its TPM signature (a Merkle batch): 0 to 1s; 0 waits for no one.")
@click.pass_context
def agent(ctx: click.Context, socket_path: Path | None, verifier_url: str,
          verifier_keys: tuple[Path, ...], cacert: Path | None, insecure: bool,
          group_name: str | None, interval: str | None, max_silence: str | None,
          report_key: str, sign_window: str) -> None:
    """Hold the TPM and authorize `attest run` for this user over a unix socket.

    \b
    The socket is 0600; only this user and root may use it (the peer's uid is
    checked on every connection), and --group's members when given. `attest run
    -- CMD` then asks the agent instead of opening the TPM, and execs the sealed
    copy the agent measured; with --interval, `attest run --supervise -- CMD` also has
    the agent stop CMD (SIGTERM, then SIGKILL after the grace) when its authorization
    stops holding, each stop in the audit log (without --interval supervised runs are
    refused: nothing would tell the agent to stop them). Stop the agent with SIGTERM
    or Ctrl-C: its supervised runs stop with it; a plain `attest run` is then refused
    (give it --verifier or --policy to open the TPM itself).

    \b
    \b
    `attest sign` finds the agent too and signs through it: requests that arrive
    within --sign-window of each other (and ask for the same key, boot-log choice
    and approvals) share one TPM signature and one quote (`attest docs signing`).

    \b
    With --interval the agent also reports to the verifier (continuous
    attestation): each report, accepted or denied, is one line on stderr, and
    a loss of trust (a denied report, the host untrusted or stale, or no
    accepted report within the verifier's report_max_age, the verifier
    unreachable included) is logged prominently and stops the supervised runs.
    The verifier's policy must allow action `report` for this host, and its
    freshness.report_max_age should be a few intervals.
      attest agent --verifier https://verifier.example/ --verifier-key v.pem
      attest agent --verifier https://verifier.example/ --interval 2s
    """
    from attest.errors import UsageError

    periods = _periods(interval, max_silence)
    window = _sign_window(sign_window)
    if periods is not None:
        from attest.tpm.keys import load_key

        load_key(ctx.obj.home, report_key)  # a missing key: said now, not at every tick
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
    # `attest run --supervise` only with reports: without them (and the feed their
    # answers open) nothing could tell the agent to stop a run, so it supervises none.
    supervisor = Supervisor(stops) if periods is not None else None
    try:
        with tpm_from(ctx) as tpm, listening(path, group) as server:
            click.echo(f"attest agent: listening on {path}", err=True)
            served = Agent(tpm, ctx.obj.home, remote, group, supervisor,
                           sign_window=window)
            continuous = None
            if periods is not None and supervisor is not None:
                from attest.host.agent.continuous import Continuous

                # The reports' losses and the feed's cuts stop supervised runs; an
                # accepted report of a trusted host after the cut readmits them.
                continuous = Continuous.wire(
                    supervisor, lambda trust: _reporter(served, periods, report_key, trust),
                    verifier_url, periods[1], cacert=cacert, insecure=insecure)
                continuous.start()
            try:
                serve(served, server, lambda: bool(stop))
            finally:
                served.close_signing()  # signs what waits, before the TPM closes
                if continuous is not None:
                    continuous.stop()  # before the TPM closes
    finally:
        if supervisor is not None:
            # Nobody supervises the supervised runs once the agent is gone: they stop
            # too (fail closed), within their grace.
            supervisor.close("host_stale", "the agent stopped: nothing supervises this run")
        stops.close()
    click.echo("attest agent: stopped", err=True)


def _periods(interval: str | None, max_silence: str | None) -> tuple[float, float] | None:
    """(interval, max silence) in seconds, or None without --interval; usage errors."""
    from attest.cli.common import parse_seconds
    from attest.errors import UsageError
    from attest.host.agent.reporting import (
        DEFAULT_SILENCES,
        MAX_INTERVAL_S,
        MAX_SILENCE_S,
        MIN_INTERVAL_S,
    )

    if interval is None:
        if max_silence is not None:
            raise UsageError("--max-silence applies to reports: give --interval too")
        return None
    every = parse_seconds(interval, "--interval", MIN_INTERVAL_S, MAX_INTERVAL_S)
    if max_silence is None:
        return every, DEFAULT_SILENCES * every
    silence = parse_seconds(max_silence, "--max-silence", MIN_INTERVAL_S, MAX_SILENCE_S)
    if silence < every:
        raise UsageError(f"--max-silence {max_silence} is shorter than --interval {interval}: "
                         "every wait between reports would lose trust")
    return every, silence


def _sign_window(text: str) -> float:
    from attest.cli.common import parse_seconds

    return parse_seconds(text, "--sign-window", 0.0, 1.0)


def _reporter(served: Agent, periods: tuple[float, float], key: str,
              trust: AgentTrust) -> Reporter:
    from attest.host.agent.reporting import Reporter
    from attest.host.run import default_subject

    def say(line: str) -> None:
        click.echo(f"attest agent: {line}", err=True)

    return Reporter(served.tpm, served.tpm_lock, served.home, served.remote, periods[0],
                    trust, subject=default_subject(), key_name=key,
                    say=say)
