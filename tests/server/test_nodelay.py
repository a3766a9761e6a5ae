"""`attest serve` answers without Nagle's delay: the connections it accepts have
TCP_NODELAY (else each answer, written as headers then body, waits ~40 ms for the
client's delayed ACK), and `--workers 2` (uvicorn's supervisor on that listener)
serves challenges and decisions."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from typing import Any

from attest.cli.serve import _listen
from attest.policy import NonceMode
from attest.store import default_url
from tests.verify.rig import Rig

SERVING = re.compile(r"on http://127\.0\.0\.1:(\d+)/v1 \((\d+) worker")


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


def _post(base: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read())


def test_two_workers_serve_challenges_and_decisions(rig: Rig) -> None:
    rig.policy(nonce=NonceMode.REQUIRED)
    policy = max(rig.tmp.glob("policy-*.yaml"))
    home = rig.tmp / "verifier"
    home.mkdir()
    env = {**os.environ, "ATTEST_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "serve", "--policy", str(policy),
         "--store", default_url(home), "--port", "0", "--workers", "2"], env=env,
        stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = SERVING.search(line)
        assert found and found.group(2) == "2", line
        base = f"http://127.0.0.1:{found.group(1)}"
        # The workers start after the line: the first request may wait for them.
        nonces = [_post(base, "/v1/challenges", {})["nonce"] for _ in range(2)]
        assert len(set(nonces)) == 2
        artifact = rig.issue(nonce=nonces[0]).decode()
        decision = _post(base, "/v1/verify", {"artifact": artifact})
        assert decision["accepted"] is True, decision
        again = _post(base, "/v1/verify", {"artifact": artifact})
        assert again["accepted"] is False and "replayed" in again["reasons"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, rest = server.communicate(timeout=30)
    assert "Traceback" not in rest, rest
