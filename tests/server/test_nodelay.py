"""`attest serve` answers without Nagle's delay: the connections it accepts have
TCP_NODELAY (else each answer, written as headers then body, waits ~40 ms for the
client's delayed ACK), and `--workers 2` (uvicorn's supervisor on that listener)
serves challenges and decisions."""

from __future__ import annotations

import asyncio
import re
import socket

from attest.cli.serve import _listen
from attest.policy import NonceMode
from tests.server.serving import call, policy_file, served
from tests.verify.rig import Rig

WORKERS = re.compile(r"on http://127\.0\.0\.1:\d+/v1 \((\d+) worker")


async def _nodelay_of_accepted(listener: socket.socket) -> int:
    """TCP_NODELAY on the connection an asyncio server (what uvicorn runs) accepts on
    ``listener``."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
    finally:
        server.close()


def test_connections_on_the_listener_have_nodelay() -> None:
    assert asyncio.run(_nodelay_of_accepted(_listen("127.0.0.1", 0))) != 0


def test_a_listener_that_does_not_say_tcp_gets_no_nodelay() -> None:
    # What the listener was before: proto left 0, asyncio does not know it is TCP. This
    # keeps the test above meaningful should asyncio change.
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    assert asyncio.run(_nodelay_of_accepted(plain)) == 0


def test_two_workers_serve_challenges_and_decisions(rig: Rig) -> None:
    policy = policy_file(rig, nonce=NonceMode.REQUIRED)
    said: list[str] = []
    with served(policy, rig.tmp / "verifier", "--workers", "2", said=said) as base:
        workers = WORKERS.search(said[0])
        assert workers and workers.group(1) == "2", said[0]
        # The workers start after the line: the first request may wait for them.
        nonces = [call(base, "/v1/challenges", {})["nonce"] for _ in range(2)]
        assert len(set(nonces)) == 2
        artifact = rig.issue(nonce=nonces[0]).decode()
        decision = call(base, "/v1/verify", {"artifact": artifact})
        assert decision["accepted"] is True, decision
        again = call(base, "/v1/verify", {"artifact": artifact})
        assert again["accepted"] is False and "replayed" in again["reasons"]
