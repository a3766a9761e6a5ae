"""`attest sign` through the host agent: concurrent requests batched under one TPM signature
(real swtpm; the agent's serve loop in a thread of this process, or a real `attest agent`
process), each bundle verified offline with its own payload; and every rule tried from
the side that would break it: kinds mixed, a payload over the bound, a stranger, sealed
PCRs changed, an agent that lies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.ear import keys as result_keys
from attest.errors import AttestError, EnvironmentProblem
from attest.host.agent import wire
from attest.host.agent.reporting import AgentTrust, Reporter
from attest.host.agent.server import Agent, listening, serve
from attest.host.agent.signclient import AgentSigned, sign_through
from attest.host.agent.signing import kind_of, sealed_memfd
from attest.host.run import Remote
from attest.signing.bundle import MAX_BUNDLE_BYTES, MAX_PAYLOAD_BYTES, Bundle
from attest.tpm import keys as signing
from attest.tpm.device import open_tpm
from attest.tpm.pcr import extend_data
from attest.verify.signature import ShownFile, verify_bundle
from tests.conftest import Host
from tests.run.conftest import ready
from tests.run.test_agent import as_stranger
from tests.run.test_agent_reports import _policy
from tests.server.serving import served
from tests.verify.rig import Rig
from tests.verify.test_approvals import Approvals, approvals

__all__ = ["approvals", "ready"]

NOWHERE = "http://127.0.0.1:9"  # a verifier never asked: signing needs none
WAIT_S = 60.0
NOBODY = 65534
OCTETS = "application/octet-stream"


@contextmanager
def agent_on(rig: Rig, window: float = 0.2) -> Iterator[tuple[Agent, Path]]:
    """The agent's serve loop in a thread, on the rig's swtpm; its socket."""
    path = rig.home / wire.SOCKET_NAME
    with open_tpm(rig.host.sim.tcti) as tpm, listening(path) as server:
        agent = Agent(tpm, rig.home, Remote(NOWHERE, []), sign_window=window)
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(agent, server, stop.is_set),
                                  daemon=True)
        thread.start()
        try:
            yield agent, path
        finally:
            stop.set()
            thread.join(WAIT_S)
            agent.close_signing()


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock


def _sign(rig: Rig, path: Path, payload: bytes, key: str = signing.DEFAULT_KEY,
          payload_type: str = OCTETS) -> AgentSigned:
    record = signing.load_key(rig.home, key)
    with _connect(path) as sock:
        return sign_through(sock, key=key, key_name=record.tpm_name,
                            key_public_pem=record.public_pem(), payload_type=payload_type,
                            payload=payload, boot_log=False, approvals=[])


def _accepted(rig: Rig, raw: bytes, payload: bytes) -> None:
    """Verified offline, the payload shown as the file it signs."""
    decision = verify_bundle(raw, rig.policy(), int(time.time()),
                             [ShownFile("payload", hashlib.sha256(payload).digest())])
    assert decision.accepted, decision.to_json()


def _together(count: int, one: Callable[[int], Any]) -> list[Any]:
    """``one(i)`` for i in range(count), from as many threads started together; the
    results in order, or the first failure raised."""
    results: list[Any] = [None] * count
    failures: list[str] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait(WAIT_S)
            results[i] = one(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(f"{i}: {exc!r}\n{traceback.format_exc()}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not failures, failures[0]
    return results


def _request(payload_fd: int | None, **changes: Any) -> dict[str, Any]:
    return {"op": "sign", "key": signing.DEFAULT_KEY, "payload_type": OCTETS,
            "boot_log": False, "approvals": [], **changes}


def _asked(path: Path, request: dict[str, Any], fd: int | None) -> dict[str, Any]:
    """The agent's answer to ``request`` (a refusal: no descriptor may come with it)."""
    with _connect(path) as sock:
        sock.settimeout(WAIT_S)
        wire.send(sock, request, fd)
        answer, out = wire.receive(sock)
    assert out is None, answer
    return answer


# -- one request, many, kinds, order --------------------------------------------------------

def test_one_sign_through_the_agent_verifies(rig: Rig) -> None:
    with agent_on(rig, window=0.0) as (_agent, path):
        done = _sign(rig, path, b"release 1.0\n")
    assert done.membership.size == 1 and done.membership.index == 0
    _accepted(rig, done.data, b"release 1.0\n")


def test_concurrent_signers_all_succeed_in_fewer_batches(rig: Rig) -> None:
    payloads = [b"build output %d\n" % i for i in range(24)]
    with agent_on(rig, window=0.3) as (agent, path):
        got: list[AgentSigned] = _together(len(payloads),
                                           lambda i: _sign(rig, path, payloads[i]))
        signer = agent.signer()
        assert signer.batches_signed < len(payloads)
    assert max(d.membership.size for d in got) > 1
    for done, payload in zip(got, payloads, strict=True):
        _accepted(rig, done.data, payload)
    # A bundle is its own payload's: another one's file does not verify it.
    other = verify_bundle(got[0].data, rig.policy(), int(time.time()),
                          [ShownFile("other", hashlib.sha256(payloads[1]).digest())])
    assert not other.accepted


def test_two_keys_never_share_a_batch(rig: Rig) -> None:
    rig.host.ok("key", "create", "--name", "second")
    keys = [signing.DEFAULT_KEY, "second"] * 8
    with agent_on(rig, window=0.3) as (_agent, path):
        got: list[AgentSigned] = _together(
            len(keys), lambda i: _sign(rig, path, b"payload %d" % i, key=keys[i]))
    roots: dict[bytes, set[str]] = {}
    quotes: dict[bytes, set[str]] = {}
    for done, key in zip(got, keys, strict=True):
        roots.setdefault(done.membership.root, set()).add(key)
        quotes.setdefault(done.bundle.quote, set()).add(key)
    assert all(len(found) == 1 for found in roots.values()), roots
    assert all(len(found) == 1 for found in quotes.values())
    assert max(d.membership.size for d in got) > 1
    for i, (done, key) in enumerate(zip(got, keys, strict=True)):
        assert done.bundle.keyid == signing.load_key(rig.home, key).tpm_name.hex()
        if i < 4:  # each key's bundles verify under its own key's policy
            _accepted(rig, done.data, b"payload %d" % i)


def test_kinds_differ_by_key_boot_log_and_approvals() -> None:
    base = kind_of("default", False, ())
    assert kind_of("default", False, ()) == base
    assert kind_of("default", True, ()) != base
    assert kind_of("defaul", False, ()) != base
    # The length prefixes: no field can absorb its neighbour's bytes.
    assert kind_of("a\x00", False, ()) != kind_of("a", False, ())
    assert kind_of("a", False, (b"xy",)) != kind_of("a", False, (b"x", b"y"))
    assert kind_of("a", False, (b"\x00",)) != kind_of("a", False, ())
    one, two = b'{"approval": 1}', b'{"approval": 2}'
    assert kind_of("default", False, (one,)) != base
    assert kind_of("default", False, (one,)) != kind_of("default", False, (two,))
    assert kind_of("default", False, (one, two)) != kind_of("default", False, (two, one))


def test_a_batch_keeps_arrival_order(rig: Rig) -> None:
    """Requests sent one after another, each whole before the next connects, sit in
    their batch in that order."""
    record = signing.load_key(rig.home, signing.DEFAULT_KEY)
    payloads = [b"in order %d" % i for i in range(8)]
    with agent_on(rig, window=1.0) as (_agent, path):
        socks = []
        try:
            for payload in payloads:
                sock = _connect(path)
                socks.append(sock)
                fd = sealed_memfd("payload", payload)
                try:
                    wire.send(sock, _request(fd), fd)
                finally:
                    os.close(fd)
            answers = []
            for sock in socks:
                sock.settimeout(WAIT_S)
                answer, out = wire.receive(sock)
                assert out is not None, answer
                with os.fdopen(out, "rb") as f:
                    answers.append(Bundle.from_bytes(f.read()))
        finally:
            for sock in socks:
                sock.close()
    by_batch: dict[bytes, list[tuple[int, int]]] = {}
    for sent, bundle in enumerate(answers):
        assert bundle.envelope.payload == payloads[sent]
        assert bundle.keyid == record.tpm_name.hex()
        assert bundle.batch is not None
        by_batch.setdefault(bundle.batch.root, []).append((sent, bundle.batch.index))
    for members in by_batch.values():
        assert [index for _, index in sorted(members)] == list(range(len(members)))
    assert max(len(m) for m in by_batch.values()) > 1


# -- refusals ---------------------------------------------------------------------------

def test_a_payload_over_the_bound_is_refused_whatever_the_descriptor_says(rig: Rig) -> None:
    with agent_on(rig, window=0.0) as (agent, path):
        over = sealed_memfd("payload", b"x" * (MAX_PAYLOAD_BYTES + 1))
        try:
            answer = _asked(path, _request(over), over)
        finally:
            os.close(over)
        assert answer["exit"] == 2 and "over the" in answer["error"], answer
        # A memfd claiming a gigabyte (sparse): refused after the bound, not read whole.
        huge = os.memfd_create("huge")
        try:
            os.ftruncate(huge, 1 << 30)
            answer = _asked(path, _request(huge), huge)
        finally:
            os.close(huge)
        assert answer["exit"] == 2 and "over the" in answer["error"], answer
        # Not memory: a file on disk, a pipe.
        on_disk = rig.tmp / "payload"
        on_disk.write_bytes(b"x")
        disk = os.open(on_disk, os.O_RDONLY)
        reading, writing = os.pipe()
        try:
            for fd in (disk, reading):
                answer = _asked(path, _request(fd), fd)
                assert answer["exit"] == 2 and "memfd" in answer["error"], answer
        finally:
            for fd in (disk, reading, writing):
                os.close(fd)
        # Malformed requests: each a usage error, nothing signed.
        payload = sealed_memfd("payload", b"ok")
        try:
            for bad in (_request(payload, key="../x"), _request(payload, boot_log=1),
                        _request(payload, approvals=["x"] * 9),
                        _request(payload, approvals=["{}"]),
                        _request(payload, payload_type="\n"),
                        {**_request(payload), "extra": 1}):
                answer = _asked(path, bad, payload)
                assert answer["exit"] == 2, (bad, answer)
            assert _asked(path, _request(None), None)["exit"] == 2
        finally:
            os.close(payload)
        assert agent._signer is None or agent.signer().batches_signed == 0


def test_a_stranger_uid_is_refused(rig: Rig) -> None:
    with agent_on(rig, window=0.0) as (agent, path):
        os.chmod(path.parent, 0o755)  # noqa: S103 - the attack: a socket left open
        os.chmod(path, 0o666)  # noqa: S103
        said = as_stranger(path, request=_request(None),
                           descriptor=lambda: sealed_memfd("payload", b"from a stranger"))
        assert said.endswith(", None)") and f"uid {NOBODY} may not use this agent" in said
        assert agent._signer is None  # nothing reached the batcher


def test_sealed_pcrs_changed_fail_the_whole_batch_and_write_nothing(rig: Rig) -> None:
    rig.host.ok("key", "create", "--name", "sealed", "--pcrs", "sha256:16")
    with agent_on(rig, window=0.3) as (agent, path):
        with agent.tpm_lock:
            extend_data(agent.tpm, 16, b"an unexpected measurement")

        def refused(i: int) -> AttestError:
            with pytest.raises(AttestError) as caught:
                _sign(rig, path, b"payload %d" % i, key="sealed")
            return caught.value

        errors: list[AttestError] = _together(6, refused)
        assert {e.exit_code for e in errors} == {1}
        assert {e.reason.value if e.reason else None for e in errors} == {
            "key_policy_mismatch"}
        out = rig.tmp / "never.json"
        payload = rig.tmp / "p"
        payload.write_bytes(b"p")
        done = subprocess.run(
            [sys.executable, "-m", "attest.cli.main", "sign", "--key", "sealed", str(payload),
             "--out", str(out)], env={**os.environ, **rig.host.env}, capture_output=True,
            text=True, timeout=120, check=False)
        assert done.returncode == 1, done.stderr
        assert "key_policy_mismatch" in done.stderr
        assert not out.exists()
        # Another kind goes on: the default key is not sealed to PCR 16.
        _accepted(rig, _sign(rig, path, b"still fine").data, b"still fine")


@pytest.mark.parametrize("bound", ["clients", "bytes"])
def test_more_than_the_waiting_bound_is_refused_at_once(rig: Rig, bound: str,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """Two requests wait (the TPM held busy); a third is over the bound on waiting
    clients, or on the payload bytes they hold: answered at once, exit 3; the two are
    answered once the TPM is free."""
    from attest.host.agent import signing as agent_signing

    if bound == "clients":
        monkeypatch.setattr(agent_signing, "MAX_WAITING", 2)
    else:
        monkeypatch.setattr(agent_signing, "MAX_WAITING_BYTES", 2 * 1000 + 999)
    with agent_on(rig, window=0.0) as (agent, path):
        waiting = []
        agent.tpm_lock.acquire()  # the TPM busy: the two wait for their signature
        try:
            for i in range(2):
                sock = _connect(path)
                waiting.append(sock)
                fd = sealed_memfd("payload", b"%d" % i * 1000)
                wire.send(sock, _request(fd), fd)
                os.close(fd)
            fd = sealed_memfd("payload", b"one too many" * 100)
            answer = _asked(path, _request(fd), fd)
            os.close(fd)
            assert answer["exit"] == 3 and "waiting" in answer["error"], answer
            agent.tpm_lock.release()
            for sock in waiting:  # those that waited are answered
                sock.settimeout(WAIT_S)
                answer, out = wire.receive(sock)
                assert answer.get("ok") is True and out is not None, answer
                os.close(out)
        finally:
            if agent.tpm_lock.locked():
                agent.tpm_lock.release()
            for sock in waiting:
                sock.close()
        deadline = time.monotonic() + WAIT_S
        while agent.signs.waiting():  # the count comes back: nothing leaks
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_waiting_clients_never_exhaust_the_agents_descriptors() -> None:
    """Each waiting client holds a descriptor: under a low limit, fewer may wait, so that
    the agent's own accept never fails for want of one (EMFILE would end its loop)."""
    import resource

    from attest.host.agent.signing import FD_RESERVE, MAX_WAITING, SignDesk

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_RESERVE + 72, hard))
    try:
        desk = SignDesk(lambda: None)  # type: ignore[arg-type,return-value]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert desk.max_waiting == 72
    roomy = SignDesk(lambda: None)  # type: ignore[arg-type,return-value]
    assert roomy.max_waiting == min(MAX_WAITING, soft - FD_RESERVE)


# -- the client checks what it gets ------------------------------------------------------

@contextmanager
def _fake_agent(path: Path, answer: Callable[[bytes], tuple[dict[str, Any], bytes | None]]
                ) -> Iterator[None]:
    """An agent that answers every sign request with ``answer(payload)``: the message,
    and the bytes it puts in a memfd (None: no descriptor)."""
    with listening(path) as server:
        server.settimeout(0.2)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    request, fd = wire.receive(conn, within=WAIT_S)
                    assert request["op"] == "sign" and fd is not None
                    payload = os.pread(fd, 1 << 20, 0)
                    os.close(fd)
                    message, data = answer(payload)
                    out = None if data is None else sealed_memfd("lie", data)
                    wire.send(conn, message, out)
                    if out is not None:
                        os.close(out)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(WAIT_S)


def test_the_client_refuses_an_agent_that_lies(rig: Rig) -> None:
    with agent_on(rig, window=0.0) as (_agent, path):
        real = _sign(rig, path, b"the real one")
    raw = real.data
    ok = {"ok": True, "batched": {"index": 0, "size": 1}}
    lies: list[tuple[str, Callable[[bytes], tuple[dict[str, Any], bytes | None]]]] = [
        ("garbage", lambda _p: (ok, b"\x00garbage")),
        ("another payload's bundle", lambda _p: (ok, raw)),
        ("no descriptor", lambda _p: (ok, None)),
        ("its answer and its bundle disagree",
         lambda _p: ({"ok": True, "batched": {"index": 1, "size": 2}}, raw)),
    ]
    fake = rig.tmp / "fake.sock"
    for what, lie in lies:
        with _fake_agent(fake, lie):
            record = signing.load_key(rig.home, signing.DEFAULT_KEY)
            payload = b"the real one" if "disagree" in what else b"something else"
            with _connect(fake) as sock, pytest.raises(EnvironmentProblem) as caught:
                sign_through(sock, key="default", key_name=record.tpm_name,
                             key_public_pem=record.public_pem(), payload_type=OCTETS,
                             payload=payload, boot_log=False, approvals=[])
            assert caught.value.exit_code == 3, what
    # Through the CLI: exit 3, nothing written.
    payload = rig.tmp / "p"
    payload.write_bytes(b"something else")
    out = rig.tmp / "out.json"
    with _fake_agent(fake, lambda _p: (ok, raw)):
        done = subprocess.run(
            [sys.executable, "-m", "attest.cli.main", "sign", str(payload), "--out",
             str(out)], env={**os.environ, **rig.host.env, "ATTEST_AGENT_SOCKET": str(fake)},
            capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert "another payload" in done.stderr and not out.exists()


def _refused_from(fake: Path, rig: Rig, data: bytes, payload: bytes) -> EnvironmentProblem:
    """What the client says of a fake agent handing back ``data`` for ``payload``."""
    record = signing.load_key(rig.home, signing.DEFAULT_KEY)
    with _fake_agent(fake, lambda _p: ({"ok": True, "batched": {"index": 0, "size": 1}},
                                       data)), \
            _connect(fake) as sock, pytest.raises(EnvironmentProblem) as caught:
        sign_through(sock, key="default", key_name=record.tpm_name,
                     key_public_pem=record.public_pem(), payload_type=OCTETS,
                     payload=payload, boot_log=False, approvals=[])
    assert caught.value.exit_code == 3
    return caught.value


def test_the_client_refuses_a_bundle_signed_by_another_key(rig: Rig) -> None:
    rig.host.ok("key", "create", "--name", "second")
    with agent_on(rig, window=0.0) as (_agent, path):
        theirs = _sign(rig, path, b"same payload", key="second")
    fake = rig.tmp / "fake.sock"
    said = _refused_from(fake, rig, theirs.data, b"same payload")
    assert "another key" in said.message
    # The keyid made to match, the signature is still the other key's.
    forged = json.loads(theirs.data)
    record = signing.load_key(rig.home, signing.DEFAULT_KEY)
    forged["envelope"]["signatures"][0]["keyid"] = record.tpm_name.hex()
    said = _refused_from(fake, rig, json.dumps(forged).encode(), b"same payload")
    assert "does not verify" in said.message


# -- the CLI and a real agent process ---------------------------------------------------

def test_attest_sign_processes_through_a_real_agent(rig: Rig) -> None:
    """`attest agent --sign-window 300ms` as a user starts it; four `attest sign --json`
    processes at once all sign through it; `--no-agent` signs unbatched."""
    pem = rig.tmp / "verifier.pem"
    pem.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {**os.environ, **rig.host.env}
    agent = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "agent", "--verifier", NOWHERE,
         "--verifier-key", str(pem), "--sign-window", "300ms"], env=env,
        stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stderr is not None
        line = agent.stderr.readline()
        assert "listening on" in line, line
        files = [rig.tmp / f"out-{i}.bin" for i in range(4)]
        signers = []
        for i, f in enumerate(files):
            f.write_bytes(b"artifact %d" % i)
            signers.append(subprocess.Popen(
                [sys.executable, "-m", "attest.cli.main", "sign", "--json", str(f),
                 "--out", f"{f}.bundle"], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        for f, proc in zip(files, signers, strict=True):
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
            said = json.loads(stdout)
            assert said["batched"]["size"] >= 1 and said["ok"] is True
            _accepted(rig, Path(f"{f}.bundle").read_bytes(), f.read_bytes())
        direct = subprocess.run(
            [sys.executable, "-m", "attest.cli.main", "sign", "--json", "--no-agent",
             str(files[0]), "--out", str(rig.tmp / "direct.bundle")], env=env,
            capture_output=True, text=True, timeout=120, check=False)
        assert direct.returncode == 0, direct.stderr
        assert json.loads(direct.stdout)["batched"] is None
        assert json.loads((rig.tmp / "direct.bundle").read_bytes())["batch"] is None
        bad = subprocess.run(
            [sys.executable, "-m", "attest.cli.main", "agent", "--verifier", NOWHERE,
             "--verifier-key", str(pem), "--sign-window", "2s"], env=env,
            capture_output=True, text=True, timeout=120, check=False)
        assert bad.returncode == 2 and "--sign-window" in bad.stderr
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        rest = agent.stderr.read() if agent.stderr else ""
        agent.wait(timeout=30)
    assert "Traceback" not in rest, rest


def test_closing_signs_what_waits_and_refuses_what_comes_after(rig: Rig) -> None:
    with agent_on(rig, window=5.0) as (agent, path):
        sock = _connect(path)
        fd = sealed_memfd("payload", b"waiting at the close")
        wire.send(sock, _request(fd), fd)
        os.close(fd)
        deadline = time.monotonic() + WAIT_S
        while agent._signer is None:  # the loop took it
            assert time.monotonic() < deadline
            time.sleep(0.01)
        agent.close_signing()  # before the window is out
        sock.settimeout(WAIT_S)
        answer, out = wire.receive(sock)
        sock.close()
        assert answer.get("ok") is True and out is not None, answer
        os.close(out)
        fd = sealed_memfd("payload", b"after the close")
        answer = _asked(path, _request(fd), fd)
        os.close(fd)
        assert answer["exit"] == 3, answer



def test_reports_keep_flowing_while_signers_hammer_the_agent(ready: tuple[Host, Path],
                                                             tmp_path: Path) -> None:
    """16 clients sign in a closed loop through the agent while its report loop issues
    and sends three reports: each report gets the TPM in turn (the ticket lock is shared
    with the batch's signature) and is accepted; every signature asked is answered."""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    said: list[str] = []
    path = host.home / wire.SOCKET_NAME
    record = signing.load_key(host.home, signing.DEFAULT_KEY)
    with open_tpm(host.sim.tcti) as tpm, served(policy, home) as base, \
            listening(path) as server:
        remote = Remote(base, [result_keys.load(home).public_key()])
        agent = Agent(tpm, host.home, remote, sign_window=0.01)
        reporter = Reporter(tpm, agent.tpm_lock, host.home, remote, 1.0, AgentTrust(60.0),
                            subject="agent", key_name="default", say=said.append)
        stop, reports_done = threading.Event(), threading.Event()
        loop = threading.Thread(target=serve, args=(agent, server, stop.is_set), daemon=True)
        loop.start()
        signed = [0] * 16

        def signer(i: int) -> None:
            n = 0
            while not reports_done.is_set():
                with _connect(path) as sock:
                    sign_through(sock, key="default", key_name=record.tpm_name,
                                 key_public_pem=record.public_pem(), payload_type=OCTETS,
                                 payload=b"%d-%d" % (i, n), boot_log=False, approvals=[])
                n += 1
            signed[i] = n

        def reports() -> None:
            try:
                for _ in range(3):
                    reporter.report_once()
            finally:
                reports_done.set()

        try:
            threading.Thread(target=reports, daemon=True).start()
            _together(16, signer)
        finally:
            reports_done.set()
            stop.set()
            loop.join(WAIT_S)
            agent.close_signing()
    accepted = [line for line in said if line.startswith("report accepted")]
    assert len(accepted) == 3, said
    assert all(n >= 1 for n in signed)


def test_a_stopped_agents_leftover_socket_falls_back_to_the_tpm(rig: Rig) -> None:
    """A socket nobody listens on (an agent killed): `attest sign` opens the TPM itself
    and writes an unbatched bundle, as without an agent."""
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(rig.home / wire.SOCKET_NAME))
    leftover.close()
    payload = rig.tmp / "p"
    payload.write_bytes(b"no agent")
    out = rig.tmp / "direct.json"
    said = rig.host.ok("sign", "--json", str(payload), "--out", str(out))
    assert json.loads(said.output)["batched"] is None
    assert json.loads(out.read_bytes())["batch"] is None
    _accepted(rig, out.read_bytes(), b"no agent")


def test_each_client_check_refuses_what_it_is_for(rig: Rig) -> None:
    """Each check of the client's, tried with a real bundle altered just past the checks
    before it: of another payload type, unbatched (a real single signature of this very
    payload), a root changed (the proof no longer holds), no boot log when one was asked;
    and at the descriptor: not a file, over the bundle bound."""
    from attest.host.agent.signclient import check_bundle
    from attest.host.sign import sign_batch, sign_payload

    record = signing.load_key(rig.home, signing.DEFAULT_KEY)
    with rig.tpm() as tpm:
        batched = sign_batch(tpm, rig.home, [(OCTETS, b"mine"), (OCTETS, b"theirs")],
                             int(time.time()))[0].to_bytes()
        single = sign_payload(tpm, rig.home, OCTETS, b"mine", int(time.time())).to_bytes()

    def check(data: bytes, payload_type: str = OCTETS, boot_log: bool = False) -> str:
        with pytest.raises(EnvironmentProblem) as caught:
            check_bundle(data, key_name=record.tpm_name, key_public_pem=record.public_pem(),
                         payload_type=payload_type, payload=b"mine", boot_log=boot_log)
        assert caught.value.exit_code == 3
        return caught.value.message

    bundle, member = check_bundle(batched, key_name=record.tpm_name,
                                  key_public_pem=record.public_pem(), payload_type=OCTETS,
                                  payload=b"mine", boot_log=False)
    assert member.size == 2 and bundle.envelope.payload == b"mine"
    assert "another payload" in check(batched, payload_type="text/plain")
    assert "not batched" in check(single)
    moved = json.loads(batched)
    moved["batch"]["root"] = "00" * 32
    assert "proof does not hold" in check(json.dumps(moved).encode())
    assert "no boot log" in check(batched, boot_log=True)

    fake = rig.tmp / "fake.sock"
    reading, writing = os.pipe()
    huge = os.memfd_create("huge")
    os.ftruncate(huge, MAX_BUNDLE_BYTES + 1)  # sparse: read only to the bound
    try:
        for fd, said in ((reading, "not a file"), (huge, "over")):
            with _fake_agent_fd(fake, fd), _connect(fake) as sock, \
                    pytest.raises(EnvironmentProblem) as caught:
                sign_through(sock, key="default", key_name=record.tpm_name,
                             key_public_pem=record.public_pem(), payload_type=OCTETS,
                             payload=b"mine", boot_log=False, approvals=[])
            assert said in caught.value.message
    finally:
        for fd in (reading, writing, huge):
            os.close(fd)


@contextmanager
def _fake_agent_fd(path: Path, fd: int) -> Iterator[None]:
    """An agent that answers one sign request with ``fd`` beside an acceptance."""
    with listening(path) as server:
        def once() -> None:
            conn, _ = server.accept()
            with conn:
                _, got = wire.receive(conn, within=WAIT_S)
                if got is not None:
                    os.close(got)
                wire.send(conn, {"ok": True, "batched": {"index": 0, "size": 1}}, fd)

        thread = threading.Thread(target=once, daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join(WAIT_S)


def test_two_approval_sets_never_share_a_batch(approvals: Approvals) -> None:
    """A key bound to an authority, asked concurrently under two approvals: each batch is
    signed under its own requests' approval, which its bundles name, and each verifies."""
    rig = approvals.rig
    texts = [approvals.approve(serial).to_bytes().decode() for serial in (1, 2)]
    record = signing.load_key(rig.home, "signed")
    asked = [texts[i % 2] for i in range(12)]

    def sign(i: int) -> AgentSigned:
        with _connect(path) as sock:
            return sign_through(sock, key="signed", key_name=record.tpm_name,
                                key_public_pem=record.public_pem(), payload_type=OCTETS,
                                payload=b"approved %d" % i, boot_log=False,
                                approvals=[asked[i]])

    with agent_on(rig, window=0.3) as (_agent, path):
        got: list[AgentSigned] = _together(len(asked), sign)
    roots: dict[bytes, set[str]] = {}
    for done, text in zip(got, asked, strict=True):
        roots.setdefault(done.membership.root, set()).add(text)
        assert done.bundle.approval == text.encode()
    assert all(len(found) == 1 for found in roots.values())
    assert max(d.membership.size for d in got) > 1
    policy = approvals.policy()
    for done in got[:2]:
        decision = verify_bundle(done.data, policy, int(time.time()))
        assert decision.accepted, decision.to_json()
