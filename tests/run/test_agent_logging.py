"""The agent's own failures reach its stderr (the operator's only view): a bug answering
a client leaves a traceback, a client's failed request a line. A real agent object on
the host's swtpm, over real unix sockets; the failures are planted in the agent."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from attest.host.agent import server as agent_server
from attest.host.agent import wire
from attest.host.agent.server import Agent
from attest.host.agent.wire import WireError
from attest.host.run import Remote
from attest.tpm.device import open_tpm
from tests.conftest import Host
from tests.run.conftest import ready

__all__ = ["ready"]

WAIT_S = 30.0
NOWHERE = "http://127.0.0.1:9"  # never asked: the failures come before any verifier


def test_an_internal_error_answering_a_client_is_logged_with_its_traceback(
        ready: tuple[Host, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    host = ready[0]
    with open_tpm(host.sim.tcti) as tpm:
        agent = Agent(tpm, host.home, Remote(NOWHERE, []))

        def planted(*_args: object) -> None:
            raise RuntimeError("planted bug")

        monkeypatch.setattr(agent, "authorize", planted)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            worker = threading.Thread(target=agent.handle, args=(theirs,), daemon=True)
            worker.start()
            wire.send(ours, {"op": "authorize", "argv": ["true"], "path": "/bin/true",
                             "key": "default"}, None)
            answer, out = wire.receive(ours)
            worker.join(timeout=WAIT_S)
        assert out is None and not worker.is_alive()
    assert answer["error"] == "internal error: RuntimeError"  # the client: the type only
    said = capsys.readouterr().err
    assert "attest agent: internal error answering a client" in said
    assert "Traceback" in said and "RuntimeError: planted bug" in said


def test_a_clients_failed_request_is_a_line_and_the_agent_goes_on(
        ready: tuple[Host, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    host = ready[0]
    handled = threading.Event()
    with open_tpm(host.sim.tcti) as tpm:
        agent = Agent(tpm, host.home, Remote(NOWHERE, []))
        calls: list[int] = []

        def failing(_conn: socket.socket) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise WireError("a client's garbage \x1b[31m")
            handled.set()

        monkeypatch.setattr(agent, "handle", failing)
        path = tmp_path / "agent.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stopping = threading.Event()
        loop = threading.Thread(target=agent_server.serve,
                                args=(agent, server, stopping.is_set), daemon=True)
        try:
            server.bind(os.fspath(path))
            server.listen(4)
            loop.start()
            for _ in range(2):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(os.fspath(path))
            assert handled.wait(timeout=WAIT_S), "the second client was never served"
        finally:
            stopping.set()
            if loop.is_alive():
                loop.join(timeout=WAIT_S)
            server.close()
        assert not loop.is_alive()
    said = capsys.readouterr().err
    assert "attest agent: a client's request failed: WireError: a client's garbage" in said
    assert "\x1b" not in said
