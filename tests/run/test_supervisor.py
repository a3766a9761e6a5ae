"""The Supervisor on real processes (no TPM involved: what it stops is any process of
ours): SIGTERM, SIGKILL after the grace, pidfds that never reach a successor of the pid,
trust lost and back; the pinning of the asking process; the record of a stop."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest import strictjson
from attest.cli.main import cli
from attest.errors import UsageError
from attest.host.agent.pinning import pinned_peer
from attest.host.agent.stops import StopLog, stop_entry
from attest.host.agent.supervision import requested_grace
from attest.host.agent.supervisor import (
    MAX_GRACE_S,
    Stop,
    SupervisedRun,
    Supervisor,
    TrustLost,
)

NOBODY = 65534
HEEDS_TERM = "echo ready; exec sleep 60"
IGNORES_TERM = "trap '' TERM; echo ready; exec sleep 60"  # ignored across exec too


@contextlib.contextmanager
def process(script: str) -> Iterator[subprocess.Popen[str]]:
    """A shell running ``script``, once it said ready; killed afterwards whatever happened."""
    child = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()


def run_of(child: subprocess.Popen[str], jti: str, grace: float = 5.0) -> SupervisedRun:
    return SupervisedRun(jti=jti, pidfd=os.pidfd_open(child.pid), pid=child.pid, grace=grace,
                         subject="alice", program="sh")


def test_a_run_that_heeds_sigterm_is_stopped_by_it_alone() -> None:
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    with process(HEEDS_TERM) as child:
        supervisor.admit(run_of(child, "j1"))
        assert supervisor.stop(frozenset({"j1"}), "revoked", "artifact revoked") == 1
        assert child.wait(timeout=30) == -signal.SIGTERM
    assert supervisor.wait(timeout=30)
    assert [(s.jti, s.pid, s.reason, s.signals) for s in stops] == [
        ("j1", child.pid, "revoked", ("SIGTERM",))]
    assert supervisor.runs() == []


def test_a_run_that_ignores_sigterm_is_killed_after_its_grace() -> None:
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    with process(IGNORES_TERM) as child:
        supervisor.admit(run_of(child, "j1", grace=0.2))
        supervisor.stop(frozenset({"j1"}), "host_untrusted", "unexpected measurement")
        assert child.wait(timeout=30) == -signal.SIGKILL
    assert supervisor.wait(timeout=30)
    assert [s.signals for s in stops] == [("SIGTERM", "SIGKILL")]


def test_a_stop_returns_before_the_grace_is_over() -> None:
    """The caller (the agent's socket loop, a trigger) never waits on a grace: with a
    grace of ten minutes, stop() returns and the process is still there to be killed."""
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    with process(IGNORES_TERM) as child:
        supervisor.admit(run_of(child, "j1", grace=MAX_GRACE_S))
        assert supervisor.stop(None, "host_stale", "no report") == 1
        assert child.poll() is None and stops == []
        child.kill()
        child.wait(timeout=30)
        assert supervisor.wait(timeout=30)
    assert [s.signals for s in stops] == [("SIGTERM",)]  # it was gone before the grace


def test_only_the_named_runs_are_stopped() -> None:
    """A stop of jti j1 leaves j2 and a process that was never supervised alone."""
    supervisor = Supervisor(lambda _stop: None)
    with process(HEEDS_TERM) as one, process(HEEDS_TERM) as two, \
            process(HEEDS_TERM) as unsupervised:
        supervisor.admit(run_of(one, "j1"))
        supervisor.admit(run_of(two, "j2"))
        supervisor.stop(frozenset({"j1", "unknown"}), "revoked", "cut")
        assert one.wait(timeout=30) == -signal.SIGTERM
        assert two.poll() is None and unsupervised.poll() is None
        assert [r.jti for r in supervisor.runs()] == ["j2"]
        supervisor.stop(None, "host_stale", "all")
        assert two.wait(timeout=30) == -signal.SIGTERM
        assert unsupervised.poll() is None
    assert supervisor.wait(timeout=30)


def test_an_exited_run_is_forgotten_and_never_signalled() -> None:
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    child = subprocess.Popen(["true"])
    supervisor.admit(SupervisedRun(jti="j1", pidfd=os.pidfd_open(child.pid), pid=child.pid,
                                   grace=1.0, subject="alice", program="true"))
    child.wait(timeout=30)  # exited and reaped: its pid is free for anyone
    assert supervisor.stop(None, "revoked", "cut") == 0
    assert supervisor.wait(timeout=30)
    assert stops == []
    assert supervisor.runs() == []


def _fork_at(pid: int) -> int | None:
    """A child that sleeps, forked at ``pid`` (ns_last_pid, root only), or None."""
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w", encoding="ascii") as last:
            last.write(str(pid - 1))
        child = os.fork()
        if child == 0:  # pragma: no cover - the successor
            signal.pause()
            os._exit(0)
        if child == pid:
            return child
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return None


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to choose the next pid")
def test_a_recycled_pid_is_never_signalled() -> None:
    """The supervised process exits and its pid goes to another process: a stop signals
    nothing (the pidfd names the old process, not the number)."""
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    first = subprocess.Popen(["true"])
    supervisor.admit(SupervisedRun(jti="j1", pidfd=os.pidfd_open(first.pid), pid=first.pid,
                                   grace=0.0, subject="alice", program="true"))
    first.wait(timeout=30)
    successor = _fork_at(first.pid)
    if successor is None:
        pytest.skip("the pid was taken by another process of this machine meanwhile")
    try:
        assert supervisor.stop(None, "revoked", "cut") == 0
        assert supervisor.wait(timeout=30)
        assert os.waitpid(successor, os.WNOHANG) == (0, 0)  # still running, not signalled
        assert stops == []
    finally:
        os.kill(successor, signal.SIGKILL)
        os.waitpid(successor, 0)


def test_after_trust_is_lost_supervised_runs_are_refused_until_it_returns() -> None:
    supervisor = Supervisor(lambda _stop: None)
    supervisor.on_trust_lost("host_stale", "no accepted report for 6 s")
    with pytest.raises(TrustLost) as lost:
        supervisor.check_admissible()
    assert lost.value.reason == "host_stale"
    with process(HEEDS_TERM) as child:
        run = run_of(child, "j1")
        with pytest.raises(TrustLost):
            supervisor.admit(run)
        assert supervisor.runs() == []
        # A revocation of named artifacts is no loss of trust; one of everything is.
        supervisor.on_trust_restored()
        supervisor.on_revoked(frozenset({"other"}), "revoked")
        supervisor.admit(run)
        supervisor.on_revoked(None, "ak_revoked")
        assert child.wait(timeout=30) == -signal.SIGTERM
        assert supervisor.lost is not None and supervisor.lost[0] == "ak_revoked"
    assert supervisor.wait(timeout=30)


@pytest.mark.parametrize(("asked", "grace"), [
    ({}, None), ({"supervise": None}, None), ({"supervise": {"grace": 5}}, 5.0),
    ({"supervise": {"grace": 0}}, 0.0), ({"supervise": {"grace": 2.5}}, 2.5),
    ({"supervise": {"grace": MAX_GRACE_S}}, float(MAX_GRACE_S)),
])
def test_a_supervise_request_names_a_bounded_grace(asked: dict[str, object],
                                                   grace: float | None) -> None:
    assert requested_grace(asked) == grace


@pytest.mark.parametrize("supervise", [
    {}, {"grace": -1}, {"grace": MAX_GRACE_S + 1}, {"grace": True}, {"grace": "5"},
    {"grace": float("nan")}, {"grace": float("inf")}, {"grace": 1, "pid": 1}, [5], 5, True,
])
def test_a_malformed_supervise_request_is_usage(supervise: object) -> None:
    with pytest.raises(UsageError):
        requested_grace({"supervise": supervise})


def _peer(uid: int | None = None, *, exit_first: bool = False
          ) -> tuple[socket.socket, socket.socket, int]:
    """(listener, accepted connection, pid) of a child that connects to an abstract
    socket (no file to reach), as ``uid`` when given; it then waits for EOF, or exits
    first. The caller reaps the child."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0attest-test-pin-{os.getpid()}-{id(listener)}")
    listener.listen(1)
    child = os.fork()
    if child == 0:  # pragma: no cover - the peer
        try:
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(listener.getsockname())
                if not exit_first:
                    conn.recv(1)
        finally:
            os._exit(0)
    conn, _ = listener.accept()
    return listener, conn, child


def test_the_asking_process_is_pinned_by_a_pidfd() -> None:
    listener, conn, child = _peer()
    try:
        pidfd, pid = pinned_peer(conn)
        try:
            assert pid == child
            signal.pidfd_send_signal(pidfd, 0)  # the pidfd is the child's
        finally:
            os.close(pidfd)
    finally:
        conn.close()
        listener.close()
        os.waitpid(child, 0)


def test_a_peer_that_has_exited_is_not_pinned() -> None:
    listener, conn, child = _peer(exit_first=True)
    os.waitpid(child, 0)  # gone and reaped: its pid could be anyone's now
    try:
        with pytest.raises(UsageError, match="--supervise"):
            pinned_peer(conn)
    finally:
        conn.close()
        listener.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as other uids")
def test_an_agent_that_could_not_signal_the_peer_refuses_supervision() -> None:
    """An agent of uid 1 (daemon), a client of uid nobody (a --group member): the agent
    could not stop it, so it must not promise to; refused before anything else."""
    listener, conn, child = _peer(NOBODY)
    reading, writing = os.pipe()
    agent = os.fork()
    if agent == 0:  # pragma: no cover - the unprivileged agent reports through the pipe
        code = 1
        try:
            os.close(reading)
            os.setgroups([])
            os.setgid(1)
            os.setuid(1)
            try:
                pinned_peer(conn)
                os.write(writing, b"pinned")
            except UsageError as exc:
                os.write(writing, exc.message.encode())
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent, which fails
            os.write(writing, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(writing)
    try:
        with os.fdopen(reading, "rb") as pipe:
            said = pipe.read().decode()
        _, status = os.waitpid(agent, 0)
        assert os.waitstatus_to_exitcode(status) == 0, said
        assert f"could not stop a process of uid {NOBODY}" in said, said
    finally:
        conn.close()
        listener.close()
        os.waitpid(child, 0)


def test_a_stop_is_an_audit_entry_and_the_log_still_verifies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    said = io.StringIO()
    log = StopLog(home, store_url=None, stream=said)
    try:
        log(Stop(jti="j1", pid=4242, subject="alice", program="/usr/bin/backup\x1b[2J",
                 reason="revoked", message="artifact revoked", signals=("SIGTERM", "SIGKILL"),
                 time=1_800_000_000.5))
        log(Stop(jti="j2", pid=4243, subject="bob", program="sh", reason="host_stale",
                 message="no report", signals=("SIGTERM",), time=1_800_000_001))
    finally:
        log.close()
    lines = said.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in said.getvalue()
    assert "pid 4242" in lines[0] and "SIGTERM+SIGKILL" in lines[0] and "revoked" in lines[0]
    assert "audit entry" in lines[0]
    runner = CliRunner()
    done = runner.invoke(cli, ["--home", str(home), "audit", "verify", "--json"],
                         env={"ATTEST_STORE": None})
    assert done.exit_code == 0, done.output
    assert strictjson.loads(done.output)["entries"] == 2

    from attest.audit.log import AuditLog
    from attest.store import Store
    from attest.store.db import default_url

    with Store.open(default_url(home)) as store:
        entries = [strictjson.loads(e.data) for e in AuditLog.open(store, None).entries()]
    assert [(e["kind"], e["decision"], e["jti"], e["pid"], e["signals"], e["reasons"],
             e["subject"], e["time"]) for e in entries] == [
        ("supervised_stop", "stopped", "j1", 4242, ["SIGTERM", "SIGKILL"], ["revoked"],
         "alice", 1_800_000_000),
        ("supervised_stop", "stopped", "j2", 4243, ["SIGTERM"], ["host_stale"], "bob",
         1_800_000_001)]
    assert "backup" not in str(entries)  # no command line in the log


def test_only_a_stop_entry_carries_a_pid_and_signals() -> None:
    """Every other kind's bytes stay as they were (receipts of decisions compare them)."""
    from attest.audit.entry import Entry, EntryKind, Outcome

    decision = Entry(kind=EntryKind.DECISION, decision=Outcome.ACCEPTED, time=1)
    assert "pid" not in decision.to_json(0) and "signals" not in decision.to_json(0)
    with pytest.raises(UsageError):
        Entry(kind=EntryKind.DECISION, decision=Outcome.ACCEPTED, time=1, pid=5)
    for pid, signals in ((None, ("SIGTERM",)), (0, ("SIGTERM",)), (5, ()),
                         (5, ("SIGKILL",)), (5, ("SIGTERM", "SIGHUP"))):
        with pytest.raises(UsageError):
            Entry(kind=EntryKind.SUPERVISED_STOP, decision=Outcome.STOPPED, time=1, pid=pid,
                  signals=signals)
    entry = stop_entry(Stop(jti="j", pid=7, subject="s", program="p", reason="x" * 5000,
                            message="m", signals=("SIGTERM",), time=3))
    assert entry.reasons[0].startswith("sha256:")  # a hostile reason is bounded


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to start a process of another uid")
def test_a_process_of_another_uid_than_the_peers_is_not_pinned() -> None:
    """What pidfd_open of a recycled pid would find on a kernel without SO_PEERPIDFD:
    a live process, but not of the peer's uid. Refused, nothing pinned."""
    from attest.host.agent.pinning import check_peer

    other = subprocess.Popen(["sleep", "60"], user=NOBODY, group=NOBODY)
    pidfd = os.pidfd_open(other.pid)
    try:
        with pytest.raises(UsageError, match="not the one that asked"):
            check_peer(pidfd, 0)
        check_peer(pidfd, NOBODY)  # the same process, for the peer it belongs to
    finally:
        os.close(pidfd)
        other.kill()
        other.wait(timeout=30)


def _refusing(monkeypatch: pytest.MonkeyPatch, pidfd: int, refused: int) -> None:
    """Signal ``refused`` to ``pidfd`` fails with EPERM (as for a CMD that changed its uid,
    e.g. through sudo); every other signal goes through."""
    real = signal.pidfd_send_signal

    def send(fd: int, sig: int, *args: object) -> None:
        if fd == pidfd and sig == refused:
            raise PermissionError(1, "Operation not permitted")
        real(fd, sig)

    monkeypatch.setattr(signal, "pidfd_send_signal", send)


def test_a_run_that_cannot_be_signalled_does_not_save_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the first run's CMD becomes another uid; a stop of everything must still
    stop the others, record the failure, and keep the first for the next stop."""
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    with process(HEEDS_TERM) as first, process(HEEDS_TERM) as second, \
            process(HEEDS_TERM) as third:
        runs = [run_of(child, f"j{n}") for n, child in enumerate((first, second, third), 1)]
        for run in runs:
            supervisor.admit(run)
        _refusing(monkeypatch, runs[0].pidfd, signal.SIGTERM)
        assert supervisor.stop(None, "host_untrusted", "unexpected measurement") == 2
        assert second.wait(timeout=30) == -signal.SIGTERM
        assert third.wait(timeout=30) == -signal.SIGTERM
        assert supervisor.wait(timeout=30)
        assert first.poll() is None
        assert [r.jti for r in supervisor.runs()] == ["j1"]  # still known, still supervised
        failed = [s for s in stops if s.failed]
        assert [(s.jti, s.signals, s.reason) for s in failed] == [
            ("j1", (), "host_untrusted")]
        assert "SIGTERM" in failed[0].failed and "not permitted" in failed[0].failed
        assert sorted(s.jti for s in stops if not s.failed) == ["j2", "j3"]
        with pytest.raises(TrustLost):
            supervisor.check_admissible()
        monkeypatch.undo()  # the next stop of everything tries it again, and now succeeds
        assert supervisor.stop(None, "host_untrusted", "unexpected measurement") == 1
        assert first.wait(timeout=30) == -signal.SIGTERM
    assert supervisor.wait(timeout=30)
    assert supervisor.runs() == []
    assert sorted(s.jti for s in stops if not s.failed) == ["j1", "j2", "j3"]


def test_a_sigkill_that_fails_is_recorded_and_the_run_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    with process(IGNORES_TERM) as child:
        run = run_of(child, "j1", grace=0.2)
        supervisor.admit(run)
        _refusing(monkeypatch, run.pidfd, signal.SIGKILL)
        assert supervisor.stop(frozenset({"j1"}), "revoked", "artifact revoked") == 1
        assert supervisor.wait(timeout=30)
        assert child.poll() is None
        assert [(s.jti, s.signals, s.failed.startswith("SIGKILL")) for s in stops] == [
            ("j1", ("SIGTERM",), True)]
        assert [r.jti for r in supervisor.runs()] == ["j1"]
        monkeypatch.undo()
        supervisor.stop(frozenset({"j1"}), "revoked", "artifact revoked")
        assert child.wait(timeout=30) == -signal.SIGKILL
    assert supervisor.wait(timeout=30)
    assert [(s.signals, s.failed) for s in stops[1:]] == [(("SIGTERM", "SIGKILL"), "")]


def test_a_failed_stop_is_an_audit_entry_of_its_own(tmp_path: Path) -> None:
    said = io.StringIO()
    log = StopLog(tmp_path / "home", store_url=None, stream=said)
    try:
        log(Stop(jti="j1", pid=4242, subject="alice", program="sudo", reason="revoked",
                 message="artifact revoked", signals=(), time=1_800_000_000,
                 failed="SIGTERM: [Errno 1] Operation not permitted"))
    finally:
        log.close()
    assert "could NOT stop" in said.getvalue() and "Operation not permitted" in said.getvalue()
    from attest.audit.log import AuditLog
    from attest.store import Store
    from attest.store.db import default_url

    with Store.open(default_url(tmp_path / "home")) as store:
        entries = [strictjson.loads(e.data) for e in AuditLog.open(store, None).entries()]
    assert [(e["decision"], e["signals"]) for e in entries] == [("stop_failed", [])]
