"""The agent's `sign` operation: concurrent `attest sign` clients batched under one TPM
signature (attest.signing.batcher), each answered with its own bundle.

Request ``{"op": "sign", "key": NAME, "payload_type": str, "boot_log": bool,
"approvals": [approval JSON text, ...]}`` with the payload in a descriptor (a memfd the
client wrote). Answer ``{"ok": true, "batched": {"index", "size"}}`` with the bundle's
bytes in a sealed memfd (a bundle can be MiBs; a wire message is at most 1 MiB), or
``{"error", "exit", "reason" (when the error has one)}``.

Rules:
- nothing is signed that was not sent: the agent reads the payload from the descriptor
  itself (at most MAX_PAYLOAD_BYTES + 1 bytes, from offset 0, whatever the descriptor
  says its size is) and computes the PAE itself;
- batches never mix kinds: a kind is the key, the boot-log choice and the approval set
  (:func:`kind_of`), and the batcher groups by kind, so a batch's one TPM signature and
  one quote are made under exactly what each of its requests asked for;
- a request's index in its batch is its arrival order: the socket loop receives it
  (bounded in time, as every request), reads its payload (from memory only) and
  submits it, in the order clients connected;
- a client's wait never holds the agent's socket loop: its connection is kept until
  its batch is signed, then answered by a small pool of threads; at most MAX_WAITING
  clients (fewer when the descriptor limit is lower) and MAX_WAITING_BYTES of payloads
  wait, beyond which a client is answered at once (exit 3);
- a failed batch (the sealed PCRs changed: key_policy_mismatch) fails each of its
  requests with that error, and nothing is written for any;
- closing signs what waits, before the TPM goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import resource
import socket
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest.errors import AttestError, EnvironmentProblem, UsageError
from attest.evidence.approval import MAX_APPROVAL_BYTES, Approval
from attest.host.agent.turns import TurnLock
from attest.host.agent.wire import WireError, read_bounded, send
from attest.host.sign import Signing, sign_evidence
from attest.signing.batcher import DEFAULT_WINDOW, Batcher, Signed
from attest.signing.bundle import MAX_PAYLOAD_BYTES
from attest.signing.dsse import check_payload_type, pae
from attest.tpm import keys as signing
from attest.tpm.device import TPM

MAX_WAITING = 1024  # sign clients waiting for their batch; beyond, refused at once
# Payloads held until their batch is signed (a bundle carries its payload): 1024 clients
# of 4 MiB each would be 4 GiB of the agent's memory.
MAX_WAITING_BYTES = 256 << 20
FD_RESERVE = 128  # descriptors kept for the rest of the agent (each waiting client holds one)
MAX_APPROVALS = 8
ANSWER_SEND_S = 10.0  # the client takes its answer within this, or is dropped
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_POLICY = "agent"  # one policy id: the kind (the batcher's key id) holds everything


@dataclass(frozen=True)
class SignRequest:
    key: str
    payload_type: str
    payload: bytes
    boot_log: bool
    approvals: tuple[Approval, ...]

    @property
    def kind(self) -> str:
        return kind_of(self.key, self.boot_log, tuple(a.to_bytes() for a in self.approvals))


def kind_of(key: str, boot_log: bool, approvals: tuple[bytes, ...]) -> str:
    """What a batch is made under: SHA-256 over the key name, the boot-log flag and each
    approval's canonical bytes (in the order asked), each length-prefixed (no two tuples
    write the same bytes). Requests of different kinds never share a batch."""
    parts = [key.encode("utf-8"), b"\x01" if boot_log else b"\x00", *approvals]
    return hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).hexdigest()


def parse_request(request: dict[str, Any], fd: int | None) -> SignRequest:
    """The sign request, its payload read from ``fd`` (not closed here); UsageError on
    anything that is not one."""
    if set(request) != {"op", "key", "payload_type", "boot_log", "approvals"}:
        raise UsageError("a sign request has exactly op, key, payload_type, boot_log and "
                         "approvals")
    key, kind, boot_log, texts = (request["key"], request["payload_type"],
                                  request["boot_log"], request["approvals"])
    if not isinstance(key, str):
        raise UsageError("key: the signing key's name")
    signing.check_name(key)
    try:
        if not isinstance(kind, str):
            raise UsageError("payload_type: a string")
        check_payload_type(kind)
    except AttestError as exc:
        raise UsageError(f"payload_type: {exc.message}") from None
    if not isinstance(boot_log, bool):
        raise UsageError("boot_log: true or false")
    if (not isinstance(texts, list) or len(texts) > MAX_APPROVALS
            or not all(isinstance(t, str) and len(t) <= MAX_APPROVAL_BYTES for t in texts)):
        raise UsageError(f"approvals: at most {MAX_APPROVALS} approval texts of at most "
                         f"{MAX_APPROVAL_BYTES} characters")
    try:
        approvals = tuple(Approval.from_json(t.encode("utf-8")) for t in texts)
    except (AttestError, UnicodeEncodeError) as exc:
        raise UsageError(f"approvals: {getattr(exc, 'message', 'not UTF-8')}") from None
    if fd is None:
        raise UsageError("no payload descriptor came with the sign request")
    return SignRequest(key, kind, read_payload(fd), boot_log, approvals)


def read_payload(fd: int) -> bytes:
    """At most MAX_PAYLOAD_BYTES from offset 0 of the memfd ``fd``; more is refused. The
    descriptor's size is not trusted (a client can grow an unsealed memfd while this
    reads): the reading stops at the bound plus one byte. Only memory is read (a memfd
    or another tmpfs file: what answers F_GET_SEALS), because this runs in the agent's
    socket loop: a file on a slow or stalled file system would hold every client up."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise UsageError("the payload descriptor is not a memfd")
    try:
        fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        raise UsageError("the payload descriptor is not a memfd") from None
    data = read_bounded(fd, MAX_PAYLOAD_BYTES)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"the payload is over the {MAX_PAYLOAD_BYTES} bytes a bundle "
                         "carries", hint="sign it with --statement: the statement names "
                         "the file by its digest")
    return data


def sealed_memfd(name: str, data: bytes) -> int:
    """``data`` in a memfd sealed against writes, growth and shrinking, its offset at 0
    (a reader that reads rather than preads gets it all)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view, at = memoryview(data), 0
        while at < len(data):
            at += os.write(fd, view[at:])
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class BatchedSigner:
    """The agent's one Batcher and what its kinds stand for. ``submit`` from any thread;
    the TPM is used only from the batcher's signer thread, under ``tpm_lock``."""

    def __init__(self, tpm: TPM, home: Path, tpm_lock: TurnLock,
                 window: float = DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        self._tpm, self._home, self._tpm_lock, self._clock = tpm, home, tpm_lock, clock
        self._lock = threading.Lock()
        # kind -> (request standing for it, requests of it not yet answered): the signer
        # thread looks the kind's key, boot-log choice and approvals up here.
        self._kinds: dict[str, tuple[SignRequest, int]] = {}
        # quiet = window: a batch is cut a window after its first request, never early.
        # The agent's clients are processes that come back (with their next request) over
        # a few ms after their answers; cut at the first 2 ms pause, a batch left half of
        # them for the next signature (16 clients, 200 ms TPM: p99 433 -> 253 ms). A lone
        # `attest sign` waits the whole window, 10 ms beside its start-up's ~150.
        self._batcher: Batcher[Signing] = Batcher(self._sign, window=window, quiet=window)

    @property
    def batches_signed(self) -> int:
        return self._batcher.batches_signed

    def submit(self, request: SignRequest) -> Future[Signed[Signing]]:
        kind = request.kind
        with self._lock:
            _, count = self._kinds.get(kind, (request, 0))
            self._kinds[kind] = (request, count + 1)
        try:
            future = self._batcher.submit(kind, _POLICY, pae(request.payload_type,
                                                             request.payload))
        except BaseException:
            self._done(kind)
            raise
        future.add_done_callback(lambda _: self._done(kind))
        return future

    def _done(self, kind: str) -> None:
        with self._lock:
            request, count = self._kinds[kind]
            if count <= 1:
                del self._kinds[kind]
            else:
                self._kinds[kind] = (request, count - 1)

    def _sign(self, kind: str, value: bytes) -> Signing:
        with self._lock:
            asked = self._kinds[kind][0]
        with self._tpm_lock:  # the report loop and authorizations share the TPM
            return sign_evidence(self._tpm, self._home, value, int(self._clock()),
                                 key_name=asked.key, include_boot_log=asked.boot_log,
                                 approvals=asked.approvals)

    def close(self) -> None:
        """Sign what waits, then stop (before the TPM closes)."""
        self._batcher.close()


def answer_of(request: SignRequest, got: Signed[Signing]) -> tuple[dict[str, Any], int]:
    """The answer for one signed request: its bundle, in a sealed memfd."""
    data = got.signature.bundle_bytes(request.payload_type, request.payload, got.membership)
    out = sealed_memfd("attest-bundle", data)
    return {"ok": True, "batched": {"index": got.membership.index,
                                    "size": got.membership.size}}, out


def error_answer(exc: BaseException) -> dict[str, Any]:
    """How the agent says a failure: its message, exit code and reason code."""
    if isinstance(exc, AttestError):
        said: dict[str, Any] = {"error": exc.message, "exit": exc.exit_code}
        if exc.reason is not None:
            said["reason"] = exc.reason.value
        return said
    # The client gets the type only; the operator gets the traceback.
    print("attest agent: internal error answering a sign client:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    return {"error": f"internal error: {type(exc).__name__}", "exit": 1}


class SignDesk:
    """Where the socket loop leaves sign requests. In the loop (arrival order is batch
    order): the request parsed, the payload read (a memfd: memory, never a slow file),
    submitted to the batch, and the connection kept (a duplicate: the loop closes its
    own). No thread waits: when the batch is signed, the batcher's signer thread builds
    each request's bundle (from the evidence's text rendered once) and sends it, before
    it looks for the next batch. Answering there, not in a pool beside it, is what keeps
    the clients together: the batcher gives the next batch a window from when the
    signer is free, i.e. after the last answer, so the clients just answered (asking
    again) join the requests that came meanwhile. Answered by a pool, they came back
    after the next batch was cut and the clients split into cohorts taking turns at
    the TPM (256 clients on the 200 ms TPM: 130 a signature, p50 456 ms; answered here
    180, p50 302-310 ms; swtpm 1,877-2,378/s -> 2,273-2,447/s, scripts/bench --only
    signagent, alternating runs)."""

    def __init__(self, signer: Callable[[], BatchedSigner]) -> None:
        self._signer = signer
        self._lock = threading.Lock()
        self._waiting = 0  # clients holding a connection until their batch is signed
        self._bytes = 0  # their payloads' bytes
        # Each waiting client holds a descriptor: never so many that the agent's own
        # accept fails (EMFILE), whatever its limit (1024 by default).
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_waiting = MAX_WAITING if soft == resource.RLIM_INFINITY else max(
            1, min(MAX_WAITING, soft - FD_RESERVE))

    def take(self, conn: socket.socket, request: dict[str, Any], fd: int | None) -> None:
        """Submit ``request``; its answer is sent on a duplicate of ``conn`` once signed.
        Takes ``fd``. Anything refused before the wait is answered here, at once."""
        with self._lock:
            full = self._waiting >= min(self.max_waiting, MAX_WAITING)
            if not full:
                self._waiting += 1
        if full:
            if fd is not None:
                os.close(fd)
            send(conn, {"error": f"{self._waiting} signing requests are waiting; retry",
                        "exit": 3})
            return
        handed, held = False, 0
        try:
            try:
                try:
                    asked = parse_request(request, fd)
                finally:
                    if fd is not None:
                        os.close(fd)
                held = self._hold(len(asked.payload))
                mine = conn.dup()
                try:
                    future = self._signer().submit(asked)
                except BaseException:
                    mine.close()
                    raise
            except Exception as exc:  # noqa: BLE001 - every failure is an answer
                send(conn, error_answer(exc))
                return
            handed = True
            # Runs in the batcher's signer thread once the batch is signed (or at once
            # when it already is): see the class docstring.
            future.add_done_callback(lambda done: self._answer(mine, asked, done))
        finally:
            if not handed:
                self._left(held)

    def _answer(self, conn: socket.socket, asked: SignRequest,
                done: Future[Signed[Signing]]) -> None:
        out: int | None = None
        try:
            try:
                answer, out = answer_of(asked, done.result())
            except Exception as exc:  # noqa: BLE001 - every failure is an answer
                answer = error_answer(exc)
            # One short message to a client that sent one: it fits the socket's buffer,
            # and a client that went away is its own loss.
            conn.settimeout(ANSWER_SEND_S)
            with contextlib.suppress(OSError, WireError):
                send(conn, answer, out)
        finally:
            if out is not None:
                os.close(out)
            conn.close()
            self._left(len(asked.payload))

    def _hold(self, size: int) -> int:
        with self._lock:
            if self._bytes + size > MAX_WAITING_BYTES:
                raise EnvironmentProblem(f"{self._bytes} bytes of payloads are waiting to "
                                         "be signed; retry")
            self._bytes += size
        return size

    def _left(self, size: int) -> None:
        with self._lock:
            self._waiting -= 1
            self._bytes -= size

    def waiting(self) -> int:
        with self._lock:
            return self._waiting


def closed_signer() -> BatchedSigner:
    raise EnvironmentProblem("the agent is stopping; the request was not signed")
