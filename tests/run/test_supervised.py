"""`attest run --supervise` end to end: the agent's serve loop in a thread of this process
(real swtpm, real `attest serve` on loopback), so the test holds its Supervisor and
drives the stops a trigger would, with no socket operation anyone could use to stop
others' runs; the clients are real `attest run` processes."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from attest import strictjson
from attest.ear.keys import trusted
from attest.host.agent import wire
from attest.host.agent.server import Agent, listening, serve
from attest.host.agent.stops import StopLog
from attest.host.agent.supervisor import Supervisor
from attest.host.run import Remote
from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.run.test_agent import _answering, _verifier_key
from tests.run.test_agent_reports import _policy as _report_policy
from tests.run.test_agent_reports import reporting_agent
from tests.server.serving import served

__all__ = ["ready"]

IGNORES_TERM = "trap '' TERM; echo ready; exec sleep 60"
HEEDS_TERM = "echo ready; exec sleep 60"
NOBODY = 65534


@contextmanager
def agent_in_thread(host: Host, base: str, pem: Path, kind: type[Supervisor] = Supervisor
                    ) -> Iterator[tuple[Supervisor, io.StringIO]]:
    """The agent as `attest agent` wires it, serving in a thread; its Supervisor and what
    its stop log printed. Stopped, and its supervised runs with it, afterwards."""
    from attest.tpm.device import open_tpm

    said = io.StringIO()
    stops = StopLog(host.home, stream=said)
    supervisor = kind(stops)
    done = threading.Event()
    with ExitStack() as stack:
        stack.callback(stops.close)
        tpm = stack.enter_context(open_tpm(host.sim.tcti))
        server = stack.enter_context(listening(host.home / wire.SOCKET_NAME))
        agent = Agent(tpm, host.home, Remote(base, trusted(host.home, (pem,))),
                      supervisor=supervisor)
        thread = threading.Thread(target=serve, args=(agent, server, done.is_set),
                                  daemon=True)
        thread.start()
        try:
            yield supervisor, said
        finally:
            done.set()
            thread.join(timeout=30)
            supervisor.close("host_stale", "the test's agent stops")


@contextmanager
def started(host: Host, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`attest run ARGS` whose CMD said ready; killed afterwards whatever happened."""
    child = subprocess.Popen([sys.executable, "-m", "attest.cli.main", "run", *args],
                             env={**os.environ, **host.env}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        assert line == "ready\n", line + child.stderr.read()
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def test_supervised_runs_are_stopped_audited_and_refused_while_trust_is_lost(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """Through a real agent: a supervised CMD that ignores SIGTERM is killed after its
    grace, one that heeds it is stopped by it, an unsupervised one is left alone; the
    stops are in the host's audit log, which verifies; after a stop of everything, a new
    supervised run is denied (nothing runs) until trust returns, unsupervised ones not."""
    host, policy = ready
    never = tmp_path / "must-not-exist"
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with agent_in_thread(host, base, pem) as (supervisor, said), \
                started(host, "--", "sh", "-c", HEEDS_TERM) as unsupervised:
            assert supervisor.runs() == []
            with started(host, "--supervise", "--grace", "1s", "--", "sh", "-c",
                         IGNORES_TERM) as stubborn:
                [run] = supervisor.runs()
                # The pid that asked is the pid that runs CMD: the thin client exec'd it.
                assert (run.pid, run.grace, run.program) == (stubborn.pid, 1.0, "sh")
                assert supervisor.stop(frozenset({run.jti}), "revoked", "cut") == 1
                assert stubborn.wait(timeout=60) == -signal.SIGKILL
                first = run
            with started(host, "--supervise", "--", "sh", "-c", HEEDS_TERM) as heeding:
                [run] = supervisor.runs()
                assert run.grace == 5.0  # the default
                supervisor.on_trust_lost("host_untrusted", "unexpected measurement")
                assert heeding.wait(timeout=60) == -signal.SIGTERM
                second = run
            assert supervisor.wait(timeout=60)
            assert unsupervised.poll() is None  # never supervised: never stopped

            refused = attest_cli(host, "run", "--supervise", "--", "sh", "-c", f"touch {never}")
            assert refused.returncode == 1, refused.stderr
            assert "host_untrusted" in refused.stderr
            assert not never.exists()
            plain = attest_cli(host, "run", "--", "sh", "-c", "exit 4")
            assert plain.returncode == 4, plain.stderr

            supervisor.on_trust_restored()
            back = attest_cli(host, "run", "--supervise", "--grace", "0", "--", "sh", "-c",
                              "exit 3")
            assert back.returncode == 3, back.stderr
            assert "supervised" in back.stderr

    lines = said.getvalue().splitlines()
    assert any(f"pid {first.pid}" in line and "SIGTERM+SIGKILL" in line
               and "revoked" in line for line in lines), lines
    assert any(f"pid {second.pid}" in line and "SIGTERM" in line
               and "host_untrusted" in line for line in lines), lines
    host.ok("audit", "verify")
    stops = _stop_entries(host.home)
    assert [(e["jti"], e["pid"], e["signals"], e["reasons"]) for e in stops[:2]] == [
        (first.jti, first.pid, ["SIGTERM", "SIGKILL"], ["revoked"]),
        (second.jti, second.pid, ["SIGTERM"], ["host_untrusted"])]


def _stop_entries(home: Path) -> list[dict[str, object]]:
    from attest.audit.log import AuditLog
    from attest.store import Store
    from attest.store.db import default_url

    with Store.open(default_url(home)) as store:
        entries = [strictjson.loads(e.data) for e in AuditLog.open(store, None).entries()]
    return [e for e in entries if e["kind"] == "supervised_stop"]


class LostMidway(Supervisor):
    """Trust is lost right after the admission check, while the run is measured and
    decided: as a trigger on another thread may do at any moment."""

    def check_admissible(self) -> None:
        super().check_admissible()
        self.on_trust_lost("host_stale", "no accepted report for 6 s")


def test_trust_lost_while_a_supervised_run_is_decided_refuses_it(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The verifier accepts, but trust went before the answer: denied, the sealed copy
    is never handed back, CMD never starts; the next supervised run is refused before
    anything is measured."""
    host, policy = ready
    never = tmp_path / "must-not-exist"
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with agent_in_thread(host, base, pem, LostMidway) as (supervisor, _said):
            refused = attest_cli(host, "run", "--supervise", "--", "sh", "-c", f"touch {never}")
            assert refused.returncode == 1, refused.stderr
            assert "host_stale" in refused.stderr and "until trust returns" in refused.stderr
            assert supervisor.runs() == []
            # A hostile grace on the socket: usage, whatever the state of trust.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(60)
                conn.connect(str(host.home / wire.SOCKET_NAME))
                true = os.open("/bin/true", os.O_RDONLY)
                wire.send(conn, {"op": "authorize", "argv": ["/bin/true"], "key": "default",
                                 "path": os.path.realpath("/bin/true"),
                                 "supervise": {"grace": 1e9}}, true)
                os.close(true)
                answer, fd = wire.receive(conn)
            assert fd is None and answer.get("exit") == 2, answer
            assert "supervise" in str(answer.get("error"))
    assert not never.exists()


def _without_agent(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    never = tmp_path / "must-not-exist"
    done = subprocess.run([sys.executable, "-m", "attest.cli.main", "run", *args, "--", "sh",
                           "-c", f"touch {never}"],
                          env={**os.environ, "ATTEST_AGENT_SOCKET": str(tmp_path / "none.sock"),
                               "ATTEST_HOME": str(tmp_path / "home"),
                               "PYTHONPATH": os.pathsep.join(sys.path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert not never.exists()
    return done


@pytest.mark.parametrize(("args", "said"), [
    (("--supervise",), "needs `attest agent`"),
    (("--supervise", "--grace", "1s"), "needs `attest agent`"),
    (("--supervise", "--verifier", "http://127.0.0.1:9"), "needs `attest agent`"),
    (("--grace", "5s"), "--grace goes with --supervise"),
    (("--supervise", "--grace", "11m"), "--grace"),
    (("--supervise", "--grace", "soon"), "--grace"),
])
def test_supervise_without_an_agent_is_usage_and_nothing_runs(
        tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    """Nobody would watch CMD: it does not run at all (never unsupervised)."""
    done = _without_agent(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr


def test_the_thin_clients_grace_bound_is_the_supervisors() -> None:
    from attest.cli.thin import MAX_GRACE_S as THIN
    from attest.host.agent.supervisor import MAX_GRACE_S

    assert THIN == MAX_GRACE_S


def test_a_stopping_agent_stops_its_supervised_runs(ready: tuple[Host, Path],
                                                    tmp_path: Path) -> None:
    """`attest agent` as users start it: once it stops, nothing would supervise CMD, so
    CMD stops with it (fail closed), said on its stderr and in the audit log; an
    unsupervised run outlives it."""
    host, from_host = ready
    policy = _report_policy(host, from_host, tmp_path)
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        # Supervision needs reports, and starts with the first accepted one.
        with reporting_agent(host, base, pem, "--interval", "1s") as (heard, agent):
            heard.wait(r"report accepted, host trusted")
            with started(host, "--", "sh", "-c", HEEDS_TERM) as unsupervised, \
                    started(host, "--supervise", "--", "sh", "-c", HEEDS_TERM) as supervised:
                agent.send_signal(signal.SIGTERM)
                assert supervised.wait(timeout=60) == -signal.SIGTERM
                assert agent.wait(timeout=60) == 0
                heard.wait("attest agent: stopped")
                said = "\n".join(heard.lines)
                assert f"pid {supervised.pid}" in said and "host_stale" in said, said
                assert unsupervised.poll() is None
    host.ok("audit", "verify")
    assert [(e["pid"], e["reasons"]) for e in _stop_entries(host.home)] == [
        (supervised.pid, ["host_stale"])]


def test_an_agent_that_does_not_confirm_supervision_runs_nothing(tmp_path: Path) -> None:
    """An agent that knows nothing of --supervise ignores it and accepts: the client
    would run CMD unsupervised, so it runs nothing (exit 3)."""
    never = tmp_path / "must-not-exist"
    fd = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
    os.write(fd, f"#!/bin/sh\ntouch {never}\n".encode())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    path = tmp_path / "agent.sock"
    thread = _answering(path, {"accepted": True, "jti": "x", "script": True}, fd)
    done = subprocess.run([sys.executable, "-m", "attest.cli.main", "run", "--supervise",
                           "--", "sh", "-c", "true"],
                          env={**os.environ, "ATTEST_AGENT_SOCKET": str(path),
                               "ATTEST_HOME": str(tmp_path / "home"),
                               "PYTHONPATH": os.pathsep.join(sys.path)},
                          capture_output=True, text=True, timeout=60, check=False)
    thread.join(timeout=30)
    os.close(fd)
    assert done.returncode == 3, done.stderr
    assert "without confirming supervision" in done.stderr
    assert not never.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as other uids")
def test_an_agent_that_could_not_stop_the_client_refuses_to_supervise_it(
        host: Host, tmp_path: Path) -> None:
    """An agent of uid 1 (daemon) serving `--group nogroup`, a client of uid nobody (a
    member, so allowed to use the agent): the agent could not signal it, so a supervised
    run is refused (exit 2) before anything is measured (the agent's child never
    reaches the TPM: it would fail there as uid 1, with another message)."""
    from attest.tpm.device import open_tpm

    folder = Path(tempfile.mkdtemp(prefix="attest-supervise-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - reachable by the client, writable by none
    sock_path = folder / "agent.sock"
    try:
        with open_tpm(host.sim.tcti) as tpm, listening(sock_path, NOBODY) as server:
            agent = Agent(tpm, host.home, Remote("http://127.0.0.1:9", []), group=NOBODY,
                          supervisor=Supervisor(lambda _stop: None))
            served_by = _serve_as(agent, server, uid=1, connections=1)
            try:
                supervised = _ask_as(sock_path, NOBODY, {"grace": 1})
            finally:
                _, status = os.waitpid(served_by, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        assert supervised.get("exit") == 2, supervised
        assert f"could not stop a process of uid {NOBODY}" in str(supervised.get("error"))
    finally:
        shutil.rmtree(folder)


def _serve_as(agent: Agent, server: socket.socket, *, uid: int, connections: int) -> int:
    """A child that answers ``connections`` clients as ``agent`` under ``uid``."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the unprivileged agent
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            server.settimeout(60)
            for _ in range(connections):
                conn, _ = server.accept()
                with conn:
                    agent.handle(conn)
            code = 0
        finally:
            os._exit(code)
    return child


def _ask_as(sock_path: Path, uid: int, supervise: dict[str, object]) -> dict[str, object]:
    """The agent's answer to a request for /bin/true from a child of ``uid``."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the client reports through the pipe
        code = 1
        try:
            os.close(reading)
            fd = os.open("/bin/true", os.O_RDONLY)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            request = {"op": "authorize", "argv": ["/bin/true"], "supervise": supervise,
                       "path": os.path.realpath("/bin/true"), "key": "default"}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(60)
                conn.connect(str(sock_path))
                wire.send(conn, request, fd)
                answer, got = wire.receive(conn)
            assert got is None
            os.write(writing, json.dumps(answer).encode())
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent, which fails
            os.write(writing, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    answer = json.loads(said)
    assert isinstance(answer, dict)
    return answer
