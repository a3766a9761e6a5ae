"""The agent's local protocol and the thin client's start: what keeps `attest run`
through the agent cheap must not loosen it. No TPM needed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from attest.host.agent import wire
from attest.host.agent.client import which

ROOT = Path(__file__).resolve().parents[2]

# Each of these pulls in re, enum or collections (or is the CLI, or a library): the
# thin client's start-up is the overhead of `attest run` through the agent.
HEAVY = {"re", "enum", "typing", "collections", "json", "socket", "shutil", "selectors",
         "pathlib", "functools", "click", "cryptography", "tpm2_pytss", "attest.errors"}


def test_the_thin_client_imports_none_of_the_heavy_modules() -> None:
    probe = ("import sys; sys.argv = ['attest', 'run', '--', '/bin/true']; "
             "import attest.cli.thin, attest.host.agent.client, attest.host.agent.wire; "
             "print(' '.join(sorted(sys.modules)))")
    # -S -I: no site (an editable install's finder imports pathlib and re itself), no
    # environment; the checkout named explicitly.
    done = subprocess.run([sys.executable, "-S", "-I", "-c",
                           f"import sys; sys.path.insert(0, {str(ROOT)!r}); {probe}"],
                          capture_output=True, text=True, check=True, timeout=60)
    loaded = set(done.stdout.split())
    assert "attest.host.agent.client" in loaded
    assert loaded & HEAVY == set()


MESSAGES = [
    {},
    {"op": "authorize", "argv": ["/bin/true", "a b", ""], "path": "/usr/bin/true",
     "keep_env": {"LD_PRELOAD": "x"}, "subject": None, "key": "default",
     "supervise": {"grace": 5}},
    {"accepted": False, "denials": [["host_untrusted", "tab\there, newline\n, \x1b[31m"]]},
    {"text": 'quote " backslash \\ del \x7f nul \x00 é \u2028 \U0001f600 lone \udcff'},
    {"numbers": [0, -1, 2**70, 2.5, -0.0, 1e300], "flags": [True, False, None]},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_messages_read_back_as_json_reads_them(message: dict[str, object]) -> None:
    encoded = wire.encode(message)
    assert encoded.isascii()
    assert json.loads(encoded) == message
    assert wire.decode(encoded) == message
    # What json writes (an older client or agent) reads the same.
    assert wire.decode(json.dumps(message, separators=(",", ":")).encode()) == message


@pytest.mark.parametrize("body", [
    b"", b"[]", b'"text"', b" {}", b"{} ", b"{}{}", b'{"a":1}x', b'{"a":1,"a":2}',
    b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}', b'{"a":1e999}', b'{"a":"\x01"}',
    b'{"a":"\xff"}', b'{"a":01}', b"{'a':1}", b'{"a":[1,]}', b'{"a":"\\ud800',
    b'{"a":' + b"[" * (wire.MAX_DEPTH + 1) + b"]" * (wire.MAX_DEPTH + 1) + b"}",
    # Deeper than the interpreter's stack: json.loads raised RecursionError, which
    # nothing caught, and the agent ended: one local client stopped it for everyone.
    b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"a":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
])
def test_anything_but_one_strict_json_object_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(body)


@pytest.mark.parametrize("message", [
    {"a": float("nan")}, {"a": float("inf")}, {"a": b"bytes"}, {"a": {1}}, {1: "a"},
    {"a": [[[[[[[[[[]]]]]]]]]]},
])
def test_what_the_protocol_cannot_carry_is_not_sent(message: dict[object, object]) -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b, pytest.raises(wire.WireError):
        wire.send(a, message)  # type: ignore[arg-type]


def test_a_message_and_its_descriptor_cross_and_a_deep_one_is_refused(
        tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"payload")
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        fd = os.open(tmp_path / "file", os.O_RDONLY)
        try:
            wire.send(a, {"op": "x"}, fd)
        finally:
            os.close(fd)
        message, got = wire.receive(b)
        assert message == {"op": "x"} and got is not None
        try:
            assert os.read(got, 16) == b"payload"
        finally:
            os.close(got)
        deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        a.sendall(wire.header(len(deep)) + deep)
        with pytest.raises(wire.WireError):
            wire.receive(b)


def test_peer_credentials_are_the_kernels() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert wire.peer_credentials(a) == (os.getuid(), os.getgid())


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("layout", ["first", "second", "duplicate", "folder-first",
                                    "not-executable-first", "empty-entry", "empty",
                                    "unset", "missing"])
def test_which_finds_what_shutil_which_finds(layout: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The client resolves CMD without shutil; the record must name the file
    attest.host.runtime.subjects.resolve_executable (shutil.which) names."""
    one, two, here = tmp_path / "one", tmp_path / "two", tmp_path / "here"
    for folder in (one, two, here):
        folder.mkdir()
    _executable(two / "cmd")
    paths = {"first": f"{two}:{one}", "second": f"{one}:{two}",
             "duplicate": f"{one}:{one}:{two}", "folder-first": f"{one}:{two}",
             "not-executable-first": f"{one}:{two}", "empty-entry": f":{two}",
             "empty": "", "missing": f"{one}"}
    if layout == "folder-first":
        (one / "cmd").mkdir()
    if layout == "not-executable-first":
        (one / "cmd").write_text("data")
    if layout == "empty-entry":
        _executable(here / "cmd")
    monkeypatch.chdir(here)
    if layout == "unset":
        monkeypatch.delenv("PATH", raising=False)
        program = "sh"
    else:
        monkeypatch.setenv("PATH", paths[layout])
        program = "cmd"
    assert which(program) == shutil.which(program)
    if layout not in ("empty", "missing"):
        assert which(program) is not None


@pytest.mark.parametrize("answer", [
    # json.loads kept the last of two members of one name: an acceptance.
    b'{"accepted":false,"denials":[["x","y"]],"accepted":true,"jti":"j","script":true}',
    b'{"accepted":true,"jti":"j","script":true} ',  # something after the object
    b'{"accepted":true,"jti":"j","script":true,"n":NaN}',
])
def test_a_client_runs_nothing_on_an_answer_that_is_not_strict_json(
        answer: bytes, tmp_path: Path) -> None:
    """Even from an agent it trusts, with a sealed executable beside it: an answer read
    two ways is no answer (exit 3), and what it would have run does not run."""
    import fcntl
    import threading

    from tests.run.test_agent import _listening, _thin

    never = tmp_path / "must-not-exist"
    fd = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
    os.write(fd, f"#!/bin/sh\ntouch {never}\n".encode())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    path = tmp_path / "agent.sock"
    server = _listening(path)

    def one() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                _, theirs = wire.receive(conn)
                if theirs is not None:
                    os.close(theirs)
                conn.sendmsg([wire.header(len(answer)) + answer],
                             [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                               fd.to_bytes(4, sys.byteorder))])

    thread = threading.Thread(target=one, daemon=True)
    thread.start()
    try:
        done = _thin(path, tmp_path)
    finally:
        thread.join(timeout=30)
        os.close(fd)
    assert done.returncode == 3, done.stderr
    assert "did not answer" in done.stderr
    assert not never.exists()
