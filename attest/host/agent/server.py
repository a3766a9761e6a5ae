"""`attest agent`: a resident host process that holds the TPM and authorizes commands for
local clients over a unix socket.

Who may use it: the socket is created 0600 (0660 in the --group given), and each
connection's peer (SO_PEERCRED, from the kernel) must be the agent's uid, root, or a
member of that group; anyone else gets an error and nothing is measured.
A client names a subject only when it is the agent's user or root; any other peer's
subject is its user name (it cannot speak for someone else).

The exec stays in the client: the client opens the executable with its own rights and
passes the descriptor; the agent copies it into a sealed memfd, measures and issues
from that copy, has the verifier verify, and on acceptance hands back the sealed memfd,
which is what the client execs. The agent never opens a path for a client (no reading
with the agent's rights what the client could not) and never runs anything.

One request at a time: the TPM takes one client at a time anyway. A sign request
(attest.host.agent.signing) is received here, then waits for its batch and is answered
from a thread of its own, so that the loop goes on gathering the batch's other requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import socket
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attest.errors import AttestError, UsageError
from attest.host.agent.challenges import ChallengeStock
from attest.host.agent.client import visible
from attest.host.agent.signing import BatchedSigner, SignDesk, closed_signer
from attest.host.agent.supervision import Admission, refusal
from attest.host.agent.supervisor import Supervisor, TrustLost
from attest.host.agent.turns import TurnLock
from attest.host.agent.wire import SOCKET_NAME, WireError, peer_credentials, receive, send
from attest.host.run import Later, Remote, run_remote
from attest.host.runtime.environment import kept_variables
from attest.host.runtime.executable import seal_opened
from attest.signing.batcher import DEFAULT_WINDOW
from attest.tpm.device import TPM
from attest.tpm.pcr import active_banks

CLIENT_TIMEOUT_S = 10.0  # a client's request arrives whole within this, or it is dropped
MAX_ARGS = 4096


def default_socket(home: Path) -> Path:
    return home / SOCKET_NAME


@dataclasses.dataclass
class Agent:
    tpm: TPM
    home: Path
    remote: Remote
    group: int | None = None  # --group: its members may use the agent too
    supervisor: Supervisor | None = None  # `attest run --supervise` (attest.host.agent.supervision)
    uid: int = dataclasses.field(init=False, default_factory=os.getuid)
    # Held by whoever uses the TPM: a client's authorization, or the report loop while it
    # issues (attest.host.agent.reporting); ESAPI is not thread-safe. Taken in turn.
    tpm_lock: TurnLock = dataclasses.field(default_factory=TurnLock)
    # The next run's nonce, fetched once a client has its answer (attest.host.agent.challenges).
    challenges: ChallengeStock = dataclasses.field(init=False)
    # `attest sign` through the agent: how long a batch waits for company (--sign-window).
    sign_window: float = DEFAULT_WINDOW
    _signer: BatchedSigner | None = dataclasses.field(init=False, default=None)
    _signing_closed: bool = dataclasses.field(init=False, default=False)
    _signer_lock: threading.Lock = dataclasses.field(init=False,
                                                     default_factory=threading.Lock)
    signs: SignDesk = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.challenges = ChallengeStock(self.remote.challenge_expiring)
        self.signs = SignDesk(self.signer)

    def signer(self) -> BatchedSigner:
        """The agent's one batcher, started by the first sign request."""
        with self._signer_lock:
            if self._signing_closed:
                return closed_signer()
            if self._signer is None:
                self._signer = BatchedSigner(self.tpm, self.home, self.tpm_lock,
                                             self.sign_window)
            return self._signer

    def close_signing(self) -> None:
        """Sign what waits, answer it (the signer thread answers each batch as it is
        signed) and refuse what comes after. Before the TPM closes."""
        with self._signer_lock:
            self._signing_closed = True
            signer, self._signer = self._signer, None
        if signer is not None:
            signer.close()

    def allowed(self, peer: int, gid: int) -> bool:
        if peer in (self.uid, 0):
            return True
        if self.group is None:
            return False
        if gid == self.group:
            return True
        try:  # supplementary groups: SO_PEERCRED carries the primary one only
            return self.group in os.getgrouplist(pwd.getpwuid(peer).pw_name, gid)
        except KeyError:
            return False

    def handle(self, conn: socket.socket) -> None:
        """One client: its request answered, whatever it sent; nothing it sends raises."""
        conn.settimeout(CLIENT_TIMEOUT_S)
        peer, gid = peer_credentials(conn)
        if not self.allowed(peer, gid):
            # Read nothing from a stranger: no descriptor of theirs is even received.
            send(conn, {"error": f"uid {peer} may not use this agent", "exit": 2})
            return
        try:  # whole within the time allowed: a client trickling bytes holds no one up
            request, fd = receive(conn, within=CLIENT_TIMEOUT_S)
        except (WireError, OSError) as exc:
            conn.settimeout(CLIENT_TIMEOUT_S)
            with contextlib.suppress(OSError, WireError):
                send(conn, {"error": f"bad request: {exc}", "exit": 2})
            return
        conn.settimeout(CLIENT_TIMEOUT_S)  # for the answer: receive left what was left
        if request.get("op") == "sign":
            self.signs.take(conn, request, fd)  # answered from a thread: the loop goes on
            return
        admission: Admission | None = None
        later: Later = []  # after the answer: the client execs meanwhile
        try:
            try:  # supervision is refused, or its process pinned, before anything is measured
                admission = Admission.asked(self.supervisor, request, conn)
            except BaseException:
                if fd is not None:
                    os.close(fd)
                raise
            answer, out = self.authorize(request, fd, peer, admission, later)
        except TrustLost as exc:
            answer, out = refusal(exc), None
        except AttestError as exc:
            answer, out = {"error": exc.message, "exit": exc.exit_code}, None
        except Exception as exc:  # noqa: BLE001 - a bug denies this run, never the next ones
            answer, out = {"error": f"internal error: {type(exc).__name__}", "exit": 1}, None
            # The client gets the type only; the operator gets the traceback.
            print("attest agent: internal error answering a client:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        try:
            send(conn, answer, out)
        finally:
            if out is not None:
                os.close(out)
            if admission is not None:
                admission.close()
            _run_later(later)
        self.challenges.refill()

    def authorize(self, request: dict[str, Any], fd: int | None, peer: int,
                  admission: Admission | None = None, later: Later | None = None
                  ) -> tuple[dict[str, Any], int | None]:
        """The decision on the request, and the sealed executable's descriptor when
        accepted (a supervised run registered first). Takes ``fd``. ``later``: what
        may wait until the answer is sent (attest.host.run.Later)."""
        try:
            argv, path, keep, subject, key = _parsed(request)
            if fd is None:
                raise UsageError("no executable descriptor came with the request")
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"not a regular file: {path}")
            # The record names the path: it must be the file the descriptor is on, so
            # a client cannot have its bytes logged under another file's name.
            try:
                named = os.stat(path)
            except OSError:
                named = None
            if named is None or (named.st_dev, named.st_ino) != (info.st_dev, info.st_ino):
                raise UsageError(f"the descriptor sent is not the file at {path}")
            if subject is None or not self.allowed_subject(peer):
                subject = _user(peer)
            kept_variables(keep, list(keep))  # checked before anything is sealed
            with self.tpm_lock:
                banks = sorted({*active_banks(self.tpm), "sha256"})
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        # The copy of the client's file is made without the TPM lock: the client chose
        # the file and how slowly it reads (1 GiB, a FUSE mount), and the report loop
        # must not wait for it, or one user could turn the host stale for everyone.
        sealed = seal_opened(Path(path), fd, banks)
        with self.tpm_lock:  # run_remote takes ``sealed`` (closed on failure)
            done = run_remote(self.tpm, self.home, argv, self.remote, subject=subject,
                              key_name=key, keep_env=list(keep), environ=keep, sealed=sealed,
                              challenge=self.challenges.take, later=later)
        if not done.decision.accepted:
            done.executable.close()
            return {"accepted": False, "denials": [[d.reason.value, d.message]
                                                   for d in done.decision.denials]}, None
        if admission is not None:
            try:
                admission.admit(done.decision.jti or "", subject)
            except TrustLost as exc:
                done.executable.close()
                return refusal(exc), None
        answer = {"accepted": True, "jti": done.decision.jti, "script": done.executable.script}
        if admission is not None:
            answer["supervised"] = True  # the client runs nothing it asked supervised without
        return answer, done.executable.fd

    def allowed_subject(self, peer: int) -> bool:
        return peer in (self.uid, 0)


def _run_later(later: Later) -> None:
    """What waited for the answer: hints, whose failure the next run survives (it sends
    the runtime log from an older prefix, or whole); said on stderr, not raised."""
    for work in later:
        try:
            work()
        except (OSError, AttestError) as exc:
            print(f"attest agent: could not remember the prefix the verifier acknowledged: "
                  f"{exc}", file=sys.stderr)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def _parsed(request: dict[str, Any]) -> tuple[list[str], str, dict[str, str], str | None, str]:
    if request.get("op") != "authorize":
        raise UsageError("the agent knows two operations: authorize and sign")
    argv, path = request.get("argv"), request.get("path")
    keep, subject, key = request.get("keep_env", {}), request.get("subject"), request.get("key")
    if (not isinstance(argv, list) or not argv or len(argv) > MAX_ARGS
            or not all(isinstance(a, str) and "\0" not in a for a in argv)):
        raise UsageError("argv: a non-empty list of strings")
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise UsageError("path: the absolute path the executable was opened at")
    if not isinstance(keep, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in keep.items()):
        raise UsageError("keep_env: an object of names and values")
    if subject is not None and not isinstance(subject, str):
        raise UsageError("subject: a string")
    if not isinstance(key, str) or not key:
        raise UsageError("key: the signing key's name")
    return argv, path, keep, subject, key


@contextlib.contextmanager
def listening(path: Path, group: int | None = None) -> Iterator[socket.socket]:
    """A unix socket at ``path``, 0600 from birth (the umask is set around bind, so no
    moment exists at which another user may connect), then 0660 in ``group`` when given
    (group first, then mode); removed afterwards. A leftover
    socket nobody answers on is replaced; one that answers means another agent: refused."""
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise UsageError(f"an agent already answers on {path}")
        finally:
            probe.close()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(str(path))
    except OSError as exc:
        server.close()
        raise UsageError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    try:
        if group is not None:
            os.chown(path, -1, group)
            os.chmod(path, 0o660)
        server.listen(16)
        yield server
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def serve(agent: Agent, server: socket.socket,
          stopping: Callable[[], bool] = lambda: False) -> None:
    """Answer clients until ``stopping``; one client's failure never ends the agent."""
    server.settimeout(0.5)
    while not stopping():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        with conn:
            try:
                agent.handle(conn)
            except (OSError, WireError) as exc:
                # The client went away mid-answer, sent garbage, or its peer checks failed:
                # its loss, not the agent's, but said (the text escaped: it may be the
                # client's).
                print(f"attest agent: a client's request failed: {type(exc).__name__}: "
                      f"{visible(str(exc))}", file=sys.stderr, flush=True)
                continue

