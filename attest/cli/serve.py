"""`attest serve`: the verifier service (attest.server) under uvicorn."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import click

from attest.cli.terminal import visible
from attest.errors import EnvironmentProblem, UsageError

if TYPE_CHECKING:  # imported when serving: the server extra may be absent
    import uvicorn

    from attest.server.tls import TlsFiles

SERVER_HINT = "pip install 'attest[server]'"
LOG_LEVEL = "warning"


def _uvicorn_level() -> str:
    """uvicorn's own log level: LOG_LEVEL, or what `attest -v`/`-vv` asked for."""
    chosen = logging.getLogger("attest").level
    if chosen == logging.NOTSET or chosen >= logging.WARNING:
        return LOG_LEVEL
    return "info" if chosen >= logging.INFO else "debug"
# How long SIGTERM waits for requests in flight before cancelling them: an event stream
# (GET /v1/events) stays open for minutes, and would otherwise hold the stop that long;
# its client reconnects to another replica with its cursor and loses nothing.
SHUTDOWN_GRACE_S = 5


@click.command("serve")
@click.option("--policy", "policy_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The verifier policy (YAML).")
@click.option("--store", "store_url", metavar="URL",
              help="The verifier's store [default: $ATTEST_STORE, else "
              "sqlite:///$ATTEST_HOME/verifier.db].")
@click.option("--host", "bind_host", default="127.0.0.1", show_default=True,
              help="Address to listen on: loopback, unless with --tls-cert or "
              "--behind-proxy.")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes, each with its own verifier on the one store.")
@click.option("--verifier-id", help="This verifier's id; artifacts for another aud are denied.")
@click.option("--nonce-ttl", default="120s", show_default=True, metavar="DURATION",
              help="How long a nonce from POST /v1/challenges is usable: the default "
              "and the most a client's {\"ttl\"} may ask for.")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), metavar="PER_S",
              help="Requests a second per host (its artifact's key, else its address), "
              "per worker; past the burst, 429 with Retry-After [default: no limit].")
@click.option("--rate-burst", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="Requests a host may make at once before --rate-limit applies.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="Serve https with this certificate (then its intermediates), PEM.")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="The certificate's private key: PEM, unencrypted, mode 600.")
@click.option("--behind-proxy", is_flag=True,
              help="Plain http on a --host beyond loopback: a TLS-terminating proxy is in "
              "front, and the network between it and the service is trusted.")
@click.option("--webhooks", "webhooks_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="ATTEST_SERVE_WEBHOOKS", metavar="JSON",
              help="POST each event to these subscribers: a JSON list of {name, url, "
              "secret}; mode 600: it holds the secrets [default: "
              "$ATTEST_SERVE_WEBHOOKS].")
@click.pass_context
def serve(ctx: click.Context, policy_path: Path, store_url: str | None, bind_host: str,
          port: int, workers: int, verifier_id: str | None, nonce_ttl: str,
          rate_limit: float | None, rate_burst: int, tls_cert: Path | None,
          tls_key: Path | None, behind_proxy: bool, webhooks_path: Path | None) -> None:
    """Serve the verifier over HTTP: challenges and verification under /v1.

    \b
    Every decision is logged in the store's audit log (its key in the home) before it
    is answered. The API is at /v1 (OpenAPI: /v1/openapi.json); `attest docs service`. Plain
    http on loopback only, unless a TLS-terminating proxy is in front (--behind-proxy);
    with --tls-cert and --tls-key, https on any address (`attest docs deploy`, TLS).
      attest serve --policy policy.yaml --port 8600
      attest serve --policy policy.yaml --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
    """
    from attest.cli.common import parse_duration

    ttl = parse_duration(nonce_ttl, "--nonce-ttl")
    tls = _tls(tls_cert, tls_key)
    if tls is None and not behind_proxy:
        _loopback(bind_host)
    try:
        import uvicorn

        from attest.server.app import create_app
        from attest.server.operate import OpsConfig
        from attest.server.webhooks import load_subscribers
    except ImportError as exc:
        raise EnvironmentProblem(f"the service needs the server extra ({exc.name} is missing)",
                                 hint=SERVER_HINT) from None
    from attest.policy import load_policy

    policy = load_policy(policy_path)
    home: Path = ctx.obj.home
    chosen = store_url or os.environ.get("ATTEST_STORE")
    if not chosen:
        # As `attest verify`: the default store lives in the home, made on first use.
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        chosen = _default_url(home)
    # Built here in this process too: a store or log key out of reach is exit 3 now.
    operations = OpsConfig(rate=rate_limit, burst=rate_burst)
    subscribers = [] if webhooks_path is None else load_subscribers(webhooks_path)
    app = create_app(policy, chosen, home, verifier_id=verifier_id, nonce_ttl=ttl,
                     operations=operations, subscribers=subscribers)
    listener = _listen(bind_host, port)
    bound = listener.getsockname()
    scheme = "http" if tls is None else "https"
    click.echo(f"attest: serving policy {policy.id} on {scheme}://{_url_host(bound[0])}:"
               f"{bound[1]}/v1 ({workers} worker(s))", err=True)
    # A line of its own: scripts read the first line's address (docs/service.md).
    click.echo(f"attest: operator console on {scheme}://{_url_host(bound[0])}:{bound[1]}/ui/ "
               "(sign in with a token from `attest admin token create`)", err=True)
    if tls is not None and tls.expired(datetime.datetime.now(datetime.UTC)):
        click.echo(f"attest: warning: --tls-cert {visible(str(tls.cert))} expired at "
                   f"{tls.not_after:%Y-%m-%d %H:%M} UTC: hosts will refuse it", err=True)
    from attest.server.tls import uvicorn_tls

    # The TLS files are read again by uvicorn, in each worker: it is given their paths.
    ssl = uvicorn_tls(tls)
    if workers == 1:
        _run(uvicorn.Config(app, log_level=_uvicorn_level(), access_log=False,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S, **ssl), listener)
        return
    # Each worker process builds its own application from the environment (a factory).
    os.environ.update({"ATTEST_SERVE_POLICY": str(policy_path.resolve()),
                       "ATTEST_SERVE_STORE": chosen, "ATTEST_SERVE_HOME": str(home),
                       "ATTEST_SERVE_VERIFIER_ID": verifier_id or "",
                       "ATTEST_SERVE_NONCE_TTL": str(ttl), **operations.environment()})
    if webhooks_path is not None:
        os.environ["ATTEST_SERVE_WEBHOOKS"] = str(webhooks_path.resolve())
    app.state.service.close()
    _run(uvicorn.Config("attest.server.app:from_environment", factory=True, workers=workers,
                        log_level=_uvicorn_level(), access_log=False,
                        timeout_graceful_shutdown=SHUTDOWN_GRACE_S, **ssl), listener)


def _run(config: uvicorn.Config, listener: socket.socket) -> None:
    """uvicorn on ``listener`` itself, not on its file descriptor: given a descriptor,
    uvicorn rebuilds the socket as AF_UNIX, and asyncio sets TCP_NODELAY only on TCP
    sockets it knows as such (family AF_INET/AF_INET6 and proto IPPROTO_TCP). Without
    it, each answer (headers, then body: two writes) waits under Nagle's algorithm for
    the client's delayed ACK: about 40 ms a request on Linux (scripts/bench --only
    service measured 20 requests/s on one keep-alive connection)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if config.workers > 1:
        Multiprocess(config, sockets=[listener]).run()
        return
    config.load_app()
    uvicorn.Server(config).run(sockets=[listener])


def _default_url(home: Path) -> str:
    from attest.store import default_url

    return default_url(home)


def _tls(cert: Path | None, key: Path | None) -> TlsFiles | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together: the certificate and its key")
    from attest.server.tls import check

    return check(cert, key)


def _loopback(host: str) -> None:
    """UsageError unless ``host`` is a loopback address: answers are signed (attest.ear),
    but in plain http the artifacts and enrollments would cross the network in clear, and
    anyone on the path could answer in the service's place (deny service at will)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if host != "localhost" and (address is None or not address.is_loopback):
        raise UsageError(f"--host {host!r} is not a loopback address: plain http would "
                         "cross the network in clear",
                         hint="serve https (--tls-cert and --tls-key), or say "
                         "--behind-proxy when a TLS-terminating proxy is in front")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``; exit 3 naming them when it can't be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on connections whose
    # socket says TCP (see _run).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(512)
    except OSError as exc:
        listener.close()
        raise EnvironmentProblem(f"cannot listen on {host}:{port}: {exc.strerror}",
                                 hint="choose another --port, or stop what holds it") from None
    listener.set_inheritable(True)
    return listener


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
