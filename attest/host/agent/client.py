"""The thin `attest run`: ask the host agent to authorize, then exec the sealed copy it
hands back. Standard library only (and attest.host.agent.wire): no click, no TPM
library, no cryptography; this is what keeps `attest run` through an agent cheap. Of the
standard library too, only what costs nothing to import (os, sys, stat, fcntl, and the
C parts of socket and json, through wire): no shutil, socket, json or typing modules,
which would pull in re, enum and collections.

Which agent is believed: the socket must be a socket owned by this user or root and
writable by no one else (by its group only when this user is in it: `attest agent
--group`), and the process answering on it must run as this user or root
(SO_PEERCRED, checked after connecting: no rename between the check and the connect
can put another user's agent there). The agent's answer is then trusted as the
verifier's decision, as the TPM and home it holds are this user's (or root's).

What is exec'd is the descriptor the agent returns: a memfd it sealed against writes
before measuring it (attest.host.runtime.executable), so the client cannot change it
and neither can anyone else.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import stat
import sys

from attest.host.agent.wire import WireError, peer_uid, receive, send
from attest.host.runtime.injecting import injects_code

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import (mypy reads it so)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, NoReturn

NO_AGENT = None
ANSWER_TIMEOUT_S = 120.0  # a verifier the agent waits on; the agent bounds its own calls


class AgentRefused(Exception):
    """The socket is not one this user may trust, or the agent answered with an error:
    ``exit`` is the exit code (2 usage, 3 environment)."""

    def __init__(self, message: str, exit: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit = exit


def trusted_socket(path: str) -> bool:
    """Whether ``path`` is an agent socket this user may use; False when there is none
    (no file). Raises AgentRefused when there is one that is not to be trusted."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise AgentRefused(f"{path} is not a socket", 3)
    if info.st_uid not in (os.getuid(), 0):
        raise AgentRefused(f"{path} belongs to uid {info.st_uid}, not to this user or root", 3)
    if info.st_mode & 0o002 or (info.st_mode & 0o020 and info.st_gid not in (
            os.getgid(), *os.getgroups())):
        raise AgentRefused(f"{path} is writable by others (mode "
                           f"{stat.S_IMODE(info.st_mode):o}): not this user's agent", 3)
    return True


def connect(path: str) -> _socket.socket | None:
    """A connection to the agent at ``path``; None when no agent answers there (no
    socket, or one nobody listens on: a stopped agent)."""
    if not trusted_socket(path):
        return NO_AGENT
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return NO_AGENT
    except OSError as exc:
        sock.close()
        raise AgentRefused(f"cannot reach the agent at {path}: {exc.strerror}", 3) from None
    uid = peer_uid(sock)
    if uid not in (os.getuid(), 0):
        sock.close()
        raise AgentRefused(f"the agent at {path} runs as uid {uid}, not as this user or "
                           "root", 3)
    return sock


def resolve(program: str) -> str:
    """The file exec would run (attest.host.runtime.subjects.resolve_executable's rule)."""
    if os.sep in program:
        found: str | None = program
    else:
        found = which(program)
    if found is None:
        raise AgentRefused(f"command not found: {program}", 2)
    # Symbolic links resolved as there: the record names the file, which the policy's
    # reference values are keyed by (/bin/true is /usr/bin/true on a merged /usr).
    resolved = os.path.realpath(found)
    if not os.path.isfile(resolved) or not os.access(resolved, os.X_OK):
        raise AgentRefused(f"not an executable file: {resolved}", 2)
    return resolved


def which(program: str) -> str | None:
    """shutil.which(program) on POSIX, without shutil's imports: the first entry of PATH
    (of the system's default path when PATH is unset) where ``program`` exists, is
    executable and is not a folder; each folder tried once."""
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    seen: set[str] = set()
    for folder in path.split(os.pathsep) if path else ():
        if folder in seen:
            continue
        seen.add(folder)
        name = os.path.join(folder, program)
        if os.path.exists(name) and os.access(name, os.F_OK | os.X_OK) \
                and not os.path.isdir(name):
            return name
    return None


class Accepted:
    """The agent's acceptance: the sealed executable's descriptor, ready to exec."""

    def __init__(self, fd: int, jti: str, script: bool) -> None:
        self.fd, self.jti, self.script = fd, jti, script

    def exec(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        if self.script:
            os.set_inheritable(self.fd, True)  # the interpreter opens /dev/fd/N
        os.execve(self.fd, list(argv), dict(env))  # noqa: S606 - the accepted command
        raise AssertionError("unreachable")  # pragma: no cover


def authorize(sock: _socket.socket, argv: Sequence[str], keep_env: Sequence[str],
              subject: str | None, key: str, environ: Mapping[str, str],
              grace: int | None = None) -> Accepted | list[tuple[str, str]]:
    """The agent's decision on ``argv``: Accepted, or the denials (reason, message).
    With ``grace`` (seconds), a supervised run: the agent stops this process (which
    becomes CMD) when the authorization stops holding."""
    path = resolve(argv[0])
    missing = [name for name in keep_env if name not in environ]
    if missing:
        raise AgentRefused(f"--keep-env {missing[0]}: not set", 2)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise AgentRefused(f"cannot open {path}: {exc.strerror}", 2) from None
    request: dict[str, Any] = {"op": "authorize", "argv": list(argv), "path": path,
               "keep_env": {name: environ[name] for name in keep_env},
               "subject": subject, "key": key}
    if grace is not None:
        request["supervise"] = {"grace": grace}
    try:
        sock.settimeout(ANSWER_TIMEOUT_S)
        send(sock, request, fd)
    finally:
        os.close(fd)
    try:
        answer, out = receive(sock)
    except (WireError, OSError) as exc:
        raise AgentRefused(f"the agent did not answer: {exc}", 3) from None
    if answer.get("accepted") is True and out is not None:
        jti, script = answer.get("jti"), answer.get("script")
        try:
            _check_sealed(out)
            if grace is not None and answer.get("supervised") is not True:
                # An agent that does not know --supervise ignores it: CMD would run
                # unsupervised. Nothing runs then.
                raise AgentRefused("the agent accepted without confirming supervision (an "
                                   "agent without --supervise?): not run", 3)
        except BaseException:
            os.close(out)
            raise
        return Accepted(out, jti if isinstance(jti, str) else "", script is True)
    if out is not None:
        os.close(out)  # a descriptor beside anything but an acceptance runs nothing
    if answer.get("accepted") is False:
        denials = answer.get("denials")
        found = [(str(d[0]), str(d[1])) for d in denials
                 if isinstance(d, list) and len(d) == 2] if isinstance(denials, list) else []
        return found or [("internal_error", "the agent denied without a reason")]
    error, code = answer.get("error"), answer.get("exit")
    raise AgentRefused(f"the agent refused: {error if isinstance(error, str) else answer}",
                       code if code in (1, 2, 3) else 3)


_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def _check_sealed(fd: int) -> None:
    """What the agent hands back is what it measured only if nobody can change it: a
    memfd sealed against writes, growth and shrinking, or (the set-user-ID case,
    attest.host.runtime.executable) a regular file only root may write. Else refused."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        info = os.fstat(fd)
        if (stat.S_ISREG(info.st_mode) and info.st_uid == 0
                and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return
        raise AgentRefused("the agent answered with an executable that is neither sealed "
                           "nor root's: not run", 3) from None
    if seals & _SEALS != _SEALS:
        raise AgentRefused("the agent answered with an executable that is not sealed: "
                           "not run", 3)


def scrubbed(environ: Mapping[str, str], keep: Sequence[str]) -> dict[str, str]:
    """``environ`` without code-injecting variables except those kept (whose values the
    artifact names: the agent hashed exactly these)."""
    return {name: value for name, value in environ.items()
            if not injects_code(name) or name in keep}


def visible(text: str) -> str:
    """attest.cli.terminal.visible without its import: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def run(sock: _socket.socket, argv: list[str], keep_env: Sequence[str], subject: str | None,
        key: str, quiet: bool, grace: int | None = None) -> int:
    """`attest run` through the agent: execs CMD on acceptance (never returns), else the
    exit code (1 denied). With ``grace``, supervised (`--supervise --grace`)."""
    done = authorize(sock, argv, keep_env, subject, key, os.environ, grace)
    sock.close()
    if isinstance(done, list):
        print(f"attest: denied, {visible(repr(' '.join(argv)))} not run: "
              f"{', '.join(reason for reason, _ in done)}", file=sys.stderr)
        for reason, message in done:
            print(f"  {visible(reason)}: {visible(message)}", file=sys.stderr)
        return 1
    if not quiet:
        how = "" if grace is None else f", supervised: SIGTERM then SIGKILL after {grace}s"
        print(f"attest: accepted ({visible(done.jti)}); running {visible(' '.join(argv))} "
              f"(through the agent{how})", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    done.exec(argv, scrubbed(os.environ, keep_env))
