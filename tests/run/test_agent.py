"""`attest agent` and the thin `attest run`: a real agent process on a real swtpm, asking a
real `attest serve` on loopback; the socket's trust rules tried from both ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from attest.cli.thin import parsed
from attest.host.agent import wire
from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.server.serving import served

__all__ = ["ready"]

NOBODY = 65534


@contextmanager
def running_agent(host: Host, base: str, pem: Path,
                  *extra: str) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """`attest agent` as a user starts it; its socket once it listens."""
    home = Path(host.env["ATTEST_HOME"])
    sock = home / wire.SOCKET_NAME
    agent = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "agent", "--verifier", base,
         "--verifier-key", str(pem), *extra], env={**os.environ, **host.env},
        stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stderr is not None
        line = agent.stderr.readline()
        assert "listening on" in line, line + (agent.stderr.read() if agent.poll() else "")
        yield sock, agent
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        rest = agent.stderr.read() if agent.stderr else ""
        agent.wait(timeout=30)
        assert "Traceback" not in rest, rest


def _verifier_key(home: Path, tmp_path: Path) -> Path:
    from attest.ear import keys as result_keys

    pem = tmp_path / "verifier.pem"
    pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
    return pem


def ask_to_run_true(sock: socket.socket, shell: str) -> None:
    """Send the agent a request to authorize `sh -c true`, with the executable's descriptor
    (``shell``: the path it was opened at)."""
    fd = os.open(shell, os.O_RDONLY)
    try:
        wire.send(sock, {"op": "authorize", "argv": ["sh", "-c", "true"],
                         "path": shell, "key": "default"}, fd)
    finally:
        os.close(fd)


def _raw(sock_path: Path, data: bytes) -> dict[str, object]:
    """What the agent answers to ``data`` sent as is."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock_path))
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        answer, fd = wire.receive(conn)
    assert fd is None
    return answer


def test_the_agent_authorizes_runs_and_denials_run_nothing(ready: tuple[Host, Path],
                                                           tmp_path: Path) -> None:
    """Through the agent: accepted, CMD runs (its exit code, the sealed copy); denied, it
    does not; hostile bytes on the socket get an error and the agent keeps serving; once
    it stops, the socket is gone and `attest run -- CMD` says how to get one."""
    host, policy = ready
    ran, never = tmp_path / "ran", tmp_path / "must-not-exist"
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with running_agent(host, base, pem) as (sock, agent):
            assert os.stat(sock).st_mode & 0o777 == 0o600
            done = attest_cli(host, "run", "--", "sh", "-c", f"echo yes > {ran}; exit 7")
            assert done.returncode == 7, done.stderr
            assert "through the agent" in done.stderr
            assert ran.read_text() == "yes\n"

            # The client scrubs as attest run does: code-injecting variables are gone.
            seen = tmp_path / "seen"
            scrubbed = subprocess.run(
                [sys.executable, "-m", "attest.cli.main", "run", "-q", "--", "sh", "-c",
                 f'echo "${{PYTHONSTARTUP-unset}} ${{KEPT_PLAIN-unset}}" > {seen}'],
                env={**os.environ, **host.env, "PYTHONSTARTUP": "/tmp/evil.py",
                     "KEPT_PLAIN": "yes"}, capture_output=True, text=True, timeout=120,
                check=False)
            assert scrubbed.returncode == 0, scrubbed.stderr
            assert seen.read_text() == "unset yes\n"

            # The last: nested past the interpreter's stack (it once ended the agent).
            deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            for garbage in (b"", b"\x00\x00\x00\x05nope!", b"\xff\xff\xff\xff",
                            b"\x00\x00\x00\x02{}", wire.header(len(deep)) + deep):
                answer = _raw(sock, garbage)
                assert answer.get("exit") == 2, answer
            no_fd = wire.header(2) + b"{}"
            assert "error" in _raw(sock, no_fd)
            # Bytes of one file under the name of another: refused, nothing measured.
            shell = os.path.realpath(shutil.which("sh") or "/bin/sh")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(sock))
                other = os.open(os.path.realpath("/bin/true"), os.O_RDONLY)
                wire.send(conn, {"op": "authorize", "argv": ["sh", "-c", f"touch {never}"],
                                 "path": shell, "key": "default"}, other)
                os.close(other)
                misnamed, fd = wire.receive(conn)
            assert fd is None and misnamed.get("exit") == 2, misnamed
            assert "not the file at" in str(misnamed.get("error"))

            host.ok("measure", "data", "--name", "unexpected", "--value", "x")
            denied = attest_cli(host, "run", "--", "sh", "-c", f"touch {never}")
            assert denied.returncode == 1, denied.stderr
            assert "reference_value_mismatch" in denied.stderr
            assert not never.exists()
            assert agent.poll() is None
        assert not sock.exists()
    stopped = attest_cli(host, "run", "--", "sh", "-c", f"touch {never}")
    assert stopped.returncode == 2, stopped.stderr
    assert "attest agent" in stopped.stderr
    assert not never.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_a_peer_of_another_uid_is_refused_by_the_agent(ready: tuple[Host, Path],
                                                       tmp_path: Path) -> None:
    """Even with the socket opened to everyone, the agent answers a stranger (another
    uid, by SO_PEERCRED) with an error and measures nothing for it."""
    host, policy = ready
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with running_agent(host, base, pem) as (sock, _agent):
            os.chmod(sock.parent, 0o755)  # noqa: S103 - the attack: a socket left open
            os.chmod(sock, 0o666)  # noqa: S103
            said = as_stranger(sock)
            assert f"uid {NOBODY} may not use this agent" in said


AUTHORIZE_TRUE = {"op": "authorize", "argv": ["/bin/true"], "path": "/bin/true",
                  "key": "default"}


def _open_true() -> int:
    return os.open("/bin/true", os.O_RDONLY)


def as_stranger(sock: Path, uid: int = NOBODY, gid: int = NOBODY, *,
                direct: bool = False, request: dict[str, Any] | None = None,
                descriptor: Callable[[], int] = _open_true) -> str:
    """The agent's answer (the repr of (answer, descriptor)) to ``request`` (default: an
    authorize of /bin/true) with the descriptor ``descriptor()`` opens, from a process
    of uid NOBODY (a fork that drops to it before connecting: the kernel records the uid
    at connect). It reaches the socket through a descriptor on its folder opened
    before: pytest's private temporary folders are not the point here."""
    reading, writing = os.pipe()
    folder = os.open(sock.parent, os.O_PATH)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(reading)
            fd = descriptor()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(30)
                conn.connect(str(sock) if direct else f"/proc/self/fd/{folder}/{sock.name}")
                # The agent may have answered and closed before reading this.
                with contextlib.suppress(BrokenPipeError):
                    wire.send(conn, AUTHORIZE_TRUE if request is None else request, fd)
                answer, got = wire.receive(conn)
            os.write(writing, repr((answer, got)).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails
            os.write(writing, (repr(exc) + traceback.format_exc()).encode())
        finally:
            os._exit(code)
    os.close(writing)
    os.close(folder)
    with os.fdopen(reading, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    return said


def _listening(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return server


def _thin(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    never = tmp_path / "must-not-exist"
    done = subprocess.run([sys.executable, "-m", "attest.cli.main", "run", "--", "sh", "-c",
                           f"touch {never}"],
                          env={**os.environ, "ATTEST_AGENT_SOCKET": str(path),
                               "ATTEST_HOME": str(tmp_path / "home"),
                               "PYTHONPATH": os.pathsep.join(sys.path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert not never.exists()
    return done


def test_a_socket_open_to_others_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    with _listening(path):
        os.chmod(path, 0o666)  # noqa: S103 - the socket under test
        done = _thin(path, tmp_path)
    assert done.returncode == 3, done.stderr
    assert "writable by others" in done.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make another uid's socket")
def test_a_socket_of_another_uid_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    with _listening(path):
        os.chown(path, NOBODY, NOBODY)
        done = _thin(path, tmp_path)
    assert done.returncode == 3, done.stderr
    assert f"belongs to uid {NOBODY}" in done.stderr


def test_a_stopped_agents_leftover_socket_falls_back_to_the_full_cli(tmp_path: Path) -> None:
    """Nobody listening: the full CLI, where plain `run -- CMD` is usage with a hint."""
    path = tmp_path / "agent.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()
    done = _thin(path, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "attest agent" in done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--", "ls", "-l"], (["ls", "-l"], [], None, "default", False, None)),
    (["run", "-q", "--keep-env", "LD_X", "--key=k", "ls"],
     (["ls"], ["LD_X"], None, "k", True, None)),
    (["run", "--subject", "s", "--", "--x"], (["--x"], [], "s", "default", False, None)),
    (["run", "--supervise", "--", "ls"], (["ls"], [], None, "default", False, "5s")),
    (["run", "--supervise", "--grace=1m", "ls"], (["ls"], [], None, "default", False, "1m")),
    (["run", "--grace", "1m", "ls"], None),
    (["run", "--verifier", "http://x", "--", "ls"], None),
    (["run", "--policy", "p.yaml", "ls"], None),
    (["run", "--help"], None),
    (["run", "--"], None),
    (["run", "--key"], None),
    (["--home", "h", "run", "ls"], None),
    (["verify", "ls"], None),
])
def test_only_the_plain_run_goes_to_the_agent(args: list[str], expected: object) -> None:
    assert parsed(args) == expected


@pytest.mark.parametrize("program", ["/bin/true", "sh", "true", "./link-to-sh"])
def test_the_thin_client_resolves_commands_as_attest_run_does(
        program: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record names the resolved file: the client must name the same one."""
    from attest.host.agent.client import resolve
    from attest.host.runtime.subjects import resolve_executable

    (tmp_path / "link-to-sh").symlink_to("/bin/sh")
    monkeypatch.chdir(tmp_path)
    assert resolve(program) == str(resolve_executable(program))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to listen as another uid")
def test_an_agent_of_another_uid_behind_a_trusted_socket_is_not_believed(
        tmp_path: Path) -> None:
    """The socket file is root's and private, but the process listening on it runs as
    another uid (SO_PEERCRED, read after connecting): refused, nothing sent to it."""
    path = tmp_path / "agent.sock"
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the impostor
        code = 1
        try:
            os.close(reading)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            os.umask(0o177)
            server.bind(str(path))
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            server.listen(1)  # the credentials a client sees are taken here
            os.write(writing, b"listening")
            server.settimeout(60)
            conn, _ = server.accept()
            os.write(writing, repr(conn.recv(1 << 16)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        assert pipe.read(9) == b"listening"
        done = _thin(path, tmp_path)
        got = pipe.read().decode()
    os.waitpid(child, 0)
    assert done.returncode == 3, done.stderr
    assert f"runs as uid {NOBODY}" in done.stderr
    assert got == "b''"  # the impostor heard nothing: no argv, no descriptor


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as other uids")
def test_with_group_its_members_are_served_and_no_one_else(ready: tuple[Host, Path],
                                                            tmp_path: Path) -> None:
    """`--group nogroup`: the socket is 0660 in it; nobody (in nogroup) gets a decision
    in its own name (denied here: /bin/true is no reference value); daemon (not in it)
    is refused by the agent even with the socket open to all."""
    host, policy = ready
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        # A folder the group can reach (pytest's own are private to root).
        folder = Path(tempfile.mkdtemp(prefix="attest-agent-", dir="/tmp"))
        os.chmod(folder, 0o755)  # noqa: S103 - reachable, not writable
        sock = folder / "agent.sock"
        try:
            with running_agent(host, base, pem, "--group", "nogroup", "--socket", str(sock)):
                info = os.stat(sock)
                assert (info.st_mode & 0o777, info.st_gid) == (0o660, NOBODY)
                member = as_stranger(sock, direct=True)
                assert "'accepted': False" in member and "may not use" not in member, member
                assert "reference_value_mismatch" in member
                # Not in the group: kept out by the mode; and, were the socket open to
                # all, by the agent itself.
                os.chmod(sock, 0o666)  # noqa: S103 - the attack: a socket left open
                daemon = as_stranger(sock, uid=1, gid=1, direct=True)
                assert "uid 1 may not use this agent" in daemon
        finally:
            shutil.rmtree(folder)


def _answering(path: Path, answer: dict[str, object], fd: int) -> threading.Thread:
    """A fake agent of this uid at ``path`` that answers one request with ``answer`` and
    ``fd``, whatever it asked."""
    server = _listening(path)

    def one() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                _, theirs = wire.receive(conn)
                if theirs is not None:
                    os.close(theirs)
                wire.send(conn, answer, fd)

    thread = threading.Thread(target=one, daemon=True)
    thread.start()
    return thread


def test_an_acceptance_with_an_unsealed_executable_runs_nothing(tmp_path: Path) -> None:
    """Even from an agent it trusts, the client execs only what nobody can change: a
    writable memfd (here a shell script that would leave a file behind) is refused."""
    never = tmp_path / "must-not-exist"
    fd = os.memfd_create("unsealed", os.MFD_ALLOW_SEALING)
    os.write(fd, f"#!/bin/sh\ntouch {never}\n".encode())
    path = tmp_path / "agent.sock"
    thread = _answering(path, {"accepted": True, "jti": "x", "script": True}, fd)
    done = _thin(path, tmp_path)
    thread.join(timeout=30)
    os.close(fd)
    assert done.returncode == 3, done.stderr
    assert "not sealed" in done.stderr
    assert not never.exists()


def test_an_unreachable_verifier_is_exit_3_and_the_agent_keeps_nothing(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The agent outlives a failed request: exit 3 for the run, CMD not run, and no
    descriptor (client's or sealed copy) left open in the agent afterwards."""
    host, _policy = ready
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    pem = tmp_path / "unused.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    never = tmp_path / "must-not-exist"
    with running_agent(host, f"http://127.0.0.1:{port}", pem) as (_sock, agent):
        opened = len(os.listdir(f"/proc/{agent.pid}/fd"))
        for _ in range(3):
            done = attest_cli(host, "run", "--", "sh", "-c", f"touch {never}")
            assert done.returncode == 3, done.stderr
        assert len(os.listdir(f"/proc/{agent.pid}/fd")) == opened
        assert agent.poll() is None
    assert not never.exists()


@pytest.mark.parametrize("home", [None, "/srv/attest-home"])
def test_the_thin_path_finds_the_socket_in_the_home_attest_uses(
        home: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from attest.cli.thin import socket_path
    from attest.home import resolve_home

    monkeypatch.delenv("ATTEST_AGENT_SOCKET", raising=False)
    if home is None:
        monkeypatch.delenv("ATTEST_HOME", raising=False)
    else:
        monkeypatch.setenv("ATTEST_HOME", home)
    assert socket_path() == str(resolve_home() / wire.SOCKET_NAME)
