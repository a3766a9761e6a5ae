"""Supervised execution: the agent keeps a run's process only while its authorization
holds (`attest run --supervise`).

A supervised run is held by a pidfd (pidfd_open, or SO_PEERPIDFD: attest.host.agent.pinning)
of the process that asked for it, which then execs CMD in the same pid. Every signal
goes through that pidfd (signal.pidfd_send_signal), never through a pid number: once
the process has exited, the pidfd names nothing, so a recycled pid is never signalled.

``stop`` sends SIGTERM, then SIGKILL once the run's grace has passed with the process
still there, in a thread of its own per run (the caller, the agent's socket loop or a
trigger, never waits on a grace), and has each stop recorded (attest.host.agent.stops).
A stop of everything (``stop(None, ...)``, trust lost) also refuses new supervised runs
until ``on_trust_restored``: fail closed.

The triggers are listeners, wired by the agent: ``on_trust_lost(reason, message)`` (the
report loop: a denied report, an untrusted or stale host, a verifier unreachable past
the allowed age) and ``on_revoked(jtis | None, reason)`` (the watcher of the host's
event feed; None: everything of this host).
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import threading
import time
from collections.abc import Callable

MAX_GRACE_S = 600  # between SIGTERM and SIGKILL, at most; a stop must end
MAX_RUNS = 4096  # live supervised runs: each holds a descriptor in the agent
# The jtis cut by name, remembered (oldest forgotten first) so that a run cut between its
# acceptance and its admission is refused there: about 1.3 MB at most.
MAX_CUT_JTIS = 10_000


@dataclasses.dataclass(frozen=True)
class Stop:
    """One stop, as recorded: which run, why, and the signals it took."""

    jti: str
    pid: int
    subject: str
    program: str  # argv[0]: the record never holds the arguments (they may be secrets)
    reason: str  # a reason code (attest.reasons), or the trigger's
    message: str
    signals: tuple[str, ...]  # ("SIGTERM",) or ("SIGTERM", "SIGKILL")
    time: float  # epoch seconds of the SIGTERM
    # Not empty: a signal could not be sent (this error); ``signals`` holds those sent.
    # The run stays supervised (fail closed): the next stop of it tries again.
    failed: str = ""


@dataclasses.dataclass(frozen=True)
class SupervisedRun:
    jti: str
    pidfd: int  # the process that asked, which execs CMD in its own pid
    pid: int  # for the record only: signals go through pidfd
    grace: float
    subject: str
    program: str


class TrustLost(Exception):
    """New supervised runs are refused: trust was lost (a stop of everything) and has
    not come back. ``reason`` is the loss's reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class Supervisor:
    """The agent's supervised runs. Thread-safe: admissions come from the socket loop,
    stops from the triggers' threads."""

    def __init__(self, record: Callable[[Stop], None], *,
                 clock: Callable[[], float] = time.time,
                 lost: tuple[str, str] | None = None) -> None:
        self._record = record
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[int, SupervisedRun] = {}  # by pidfd
        # ``lost`` given: new runs refused from the start, until on_trust_restored.
        self._lost: tuple[str, str] | None = lost
        self._cut: dict[str, str] = {}  # jti -> the reason it was cut, oldest first
        self._stopping: list[threading.Thread] = []

    # -- admission ---------------------------------------------------------------------

    def check_admissible(self) -> None:
        """TrustLost while trust is lost: checked before anything is measured."""
        with self._lock:
            if self._lost is not None:
                raise TrustLost(*self._lost)

    def admit(self, run: SupervisedRun) -> None:
        """Supervise ``run`` from now on (it takes the pidfd), or TrustLost (the caller
        keeps the pidfd and must not let the run start). Under the same lock as ``stop``:
        a stop of everything either sees this run or refuses it."""
        with self._lock:
            if self._lost is not None:
                raise TrustLost(*self._lost)
            if run.jti in self._cut:  # revoked while the verifier's answer came back
                raise TrustLost(self._cut[run.jti],
                                "this run's artifact was revoked before it started")
            self._forget_exited()
            if len(self._runs) >= MAX_RUNS:
                raise TrustLost("internal_error", f"{MAX_RUNS} supervised runs already")
            self._runs[run.pidfd] = run

    def runs(self) -> list[SupervisedRun]:
        """The runs whose process is still there."""
        with self._lock:
            self._forget_exited()
            return list(self._runs.values())

    # -- stopping ----------------------------------------------------------------------

    def stop(self, jtis: frozenset[str] | None, reason_code: str, message: str) -> int:
        """Stop the runs of ``jtis`` (None: all, and refuse new ones until trust is
        back): SIGTERM now, SIGKILL after each run's grace. Returns at once with the
        number of processes signalled; each stop is recorded once it is done."""
        with self._lock:
            if jtis is None:
                self._lost = (reason_code, message)
            else:
                self._remember_cut(jtis, reason_code)
            chosen = [run for run in self._runs.values() if jtis is None or run.jti in jtis]
            for run in chosen:
                del self._runs[run.pidfd]
        # Every chosen run is tried: one that cannot be signalled is recorded as a failed
        # stop and put back (_keep), never ends the stop of the others.
        return sum(self._terminate(run, reason_code, message) for run in chosen)

    def on_trust_lost(self, reason: str, message: str) -> None:
        """Listener of the agent's reports: the host is no longer trusted (or nobody
        could say so for longer than allowed)."""
        self.stop(None, reason, message)

    def on_revoked(self, jtis: frozenset[str] | None, reason: str) -> None:
        """Listener of the host's event feed: these artifacts (None: everything of this
        host) are cut."""
        self.stop(jtis, reason, "revoked" if jtis is not None
                  else "this host's authorizations were withdrawn")

    def on_trust_restored(self) -> None:
        """The wiring's word that trust is back (an accepted report of a trusted host):
        supervised runs are admitted again."""
        with self._lock:
            self._lost = None

    @property
    def lost(self) -> tuple[str, str] | None:
        """(reason, message) of the loss while new runs are refused, else None."""
        with self._lock:
            return self._lost

    def close(self, reason_code: str, message: str) -> None:
        """The agent stops: nothing will supervise its runs any more, so they stop too
        (fail closed); returns once every stop is done (at most the longest grace)."""
        self.stop(None, reason_code, message)
        self.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the stops under way; whether they are all done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            pending = list(self._stopping)
        for thread in pending:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._stopping = [t for t in self._stopping if t.is_alive()]
            return not self._stopping

    def _terminate(self, run: SupervisedRun, reason: str, message: str) -> int:
        if exited(run.pidfd):
            os.close(run.pidfd)
            return 0
        began = self._clock()
        try:
            signal.pidfd_send_signal(run.pidfd, signal.SIGTERM)
        except ProcessLookupError:  # exited since: the pidfd names nobody else
            os.close(run.pidfd)
            return 0
        except OSError as exc:  # EPERM (the process changed its uid), ...: not stopped
            self._failed(run, reason, message, began, (), f"SIGTERM: {exc}")
            return 0
        thread = threading.Thread(target=self._escalate, args=(run, reason, message, began),
                                  name=f"attest-stop-{run.pid}", daemon=True)
        with self._lock:
            self._stopping = [t for t in self._stopping if t.is_alive()]
            self._stopping.append(thread)
        thread.start()
        return 1

    def _escalate(self, run: SupervisedRun, reason: str, message: str, began: float) -> None:
        kept = False
        try:
            signals = ["SIGTERM"]
            if not exits_within(run.pidfd, run.grace):
                try:
                    signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)
                    signals.append("SIGKILL")
                except ProcessLookupError:  # it exited just now
                    pass
                except OSError as exc:  # still there and not killed: kept, said
                    kept = True
                    self._failed(run, reason, message, began, ("SIGTERM",), f"SIGKILL: {exc}")
                    return
            self._record(Stop(jti=run.jti, pid=run.pid, subject=run.subject,
                              program=run.program, reason=reason, message=message,
                              signals=tuple(signals), time=began))
        finally:
            if not kept:
                os.close(run.pidfd)

    def _failed(self, run: SupervisedRun, reason: str, message: str, began: float,
                signals: tuple[str, ...], error: str) -> None:
        """A signal to ``run`` failed: the run goes back among the supervised ones (its
        pidfd kept), so that the next stop (the next report's loss, the feed's next
        revocation, the agent's close) tries again, and the failure is recorded. Fail
        closed: a run that could not be stopped is never forgotten. A stop of everything
        still refuses new runs; a jti stop has its jti remembered as cut."""
        with self._lock:
            self._runs[run.pidfd] = run
        self._record(Stop(jti=run.jti, pid=run.pid, subject=run.subject, program=run.program,
                          reason=reason, message=message, signals=signals, time=began,
                          failed=error))

    def cut_jtis(self) -> int:
        """How many cut jtis are remembered."""
        with self._lock:
            return len(self._cut)

    def _remember_cut(self, jtis: frozenset[str], reason_code: str) -> None:
        for jti in jtis:
            self._cut.pop(jti, None)
            self._cut[jti] = reason_code
        for jti in list(self._cut)[:max(0, len(self._cut) - MAX_CUT_JTIS)]:
            del self._cut[jti]

    def _forget_exited(self) -> None:
        for pidfd in [fd for fd in self._runs if exited(fd)]:
            del self._runs[pidfd]
            os.close(pidfd)


def exited(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` has exited (a pidfd polls readable then)."""
    return exits_within(pidfd, 0)


def exits_within(pidfd: int, seconds: float) -> bool:
    poll = select.poll()
    poll.register(pidfd, select.POLLIN)
    return bool(poll.poll(max(0, round(seconds * 1000))))
