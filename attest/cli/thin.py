"""`attest run` through a host agent, decided before click and the command tree load.

Only the plain form goes this way: ``attest run [-q] [--keep-env NAME]... [--subject S]
[--key K] [--supervise [--grace DURATION]] [--] CMD ARGS...``, with an agent answering
on $ATTEST_AGENT_SOCKET or $ATTEST_HOME/agent.sock. Anything else (--policy,
--verifier, --help, global options), or no agent answering (no socket, or a stopped
agent's leftover), returns and the full CLI runs as before: today's path, which opens
the TPM itself (and refuses --supervise: nothing runs unsupervised). A socket that is
there but not to be trusted is an error (exit 3), never a silent fallback: something is
impersonating the agent.
"""

from __future__ import annotations

import os
import sys

MAX_GRACE_S = 600  # attest.host.agent.supervisor.MAX_GRACE_S (not imported: its cost)
_VALUED = {"--keep-env", "--subject", "--key", "--grace"}
DEFAULT_GRACE = "5s"


def parsed(args: list[str]
           ) -> tuple[list[str], list[str], str | None, str, bool, str | None] | None:
    """(argv, keep_env, subject, key, quiet, grace) for the plain form of `run ...`, else
    None; grace is None unless --supervise (then its text, default 5s)."""
    if not args or args[0] != "run":
        return None
    keep: list[str] = []
    subject, key, quiet = None, "default", False
    supervise, grace = False, None
    rest = args[1:]
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        if arg in ("-q", "--quiet"):
            quiet = True
            continue
        if arg == "--supervise":
            supervise = True
            continue
        name, eq, value = arg.partition("=")
        if name in _VALUED:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            if name == "--keep-env":
                keep.append(value)
            elif name == "--subject":
                subject = value
            elif name == "--grace":
                grace = value
            else:
                key = value
            continue
        if arg.startswith("-"):
            return None  # an option the plain form does not take: the full CLI
        rest.insert(0, arg)
        break
    if not rest or (grace is not None and not supervise):
        return None  # --grace alone: the full CLI says it goes with --supervise
    return rest, keep, subject, key, quiet, (grace or DEFAULT_GRACE) if supervise else None


def socket_path() -> str:
    """$ATTEST_AGENT_SOCKET, else agent.sock in the home attest.home names."""
    explicit = os.environ.get("ATTEST_AGENT_SOCKET")
    if explicit:
        return explicit
    from attest.home import default_home
    from attest.host.agent.wire import SOCKET_NAME

    return os.path.join(default_home(os.environ), SOCKET_NAME)


def maybe_thin_run(args: list[str]) -> None:
    """Exec CMD or exit when an agent answered; return when the full CLI is to run."""
    plain = parsed(args)
    if plain is None:
        return
    from attest.host.agent import client

    argv, keep, subject, key, quiet, grace_text = plain
    grace = None
    if grace_text is not None:
        from attest.durations import parse_duration, range_hint

        try:
            grace = parse_duration(grace_text, maximum=MAX_GRACE_S)
        except ValueError as exc:
            # The wording of every other duration option's refusal (attest.cli.common).
            print(f"error: --grace: {client.visible(str(exc))}\n"
                  f"hint: {range_hint(0, MAX_GRACE_S * 1000)}", file=sys.stderr)
            sys.exit(2)
    try:
        sock = client.connect(socket_path())
        if sock is None:
            return  # the full CLI refuses --supervise without an agent: nothing runs
        code = client.run(sock, argv, keep, subject, key, quiet, grace)
    except client.AgentRefused as exc:
        print(f"attest: {client.visible(exc.message)}", file=sys.stderr)
        sys.exit(exc.exit)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)
