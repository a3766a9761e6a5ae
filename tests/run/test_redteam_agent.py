"""Red team of the host agent (issue 14), as a host user: get a command to run
"supervised" while nothing would ever stop it, or keep the agent's report loop from the
TPM. Real swtpm, real `attest serve` on loopback, real `attest agent` and `attest run`."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from attest.ear import keys as result_keys
from attest.host.agent import server as agent_server
from attest.host.agent import wire
from attest.host.agent.reporting import AgentTrust, HostState, Reporter
from attest.host.agent.server import Agent
from attest.host.agent.supervision import PENDING
from attest.host.agent.supervisor import Stop, SupervisedRun, Supervisor, TrustLost
from attest.host.run import Remote
from attest.tpm.device import open_tpm
from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.run.test_agent import _verifier_key, ask_to_run_true, running_agent
from tests.run.test_agent_reports import WAIT_S, _policy
from tests.server.serving import served

__all__ = ["ready"]


def test_an_agent_without_reports_refuses_to_supervise(ready: tuple[Host, Path],
                                                       tmp_path: Path) -> None:
    """The attack: `attest run --supervise` through an agent started without --interval.
    Such an agent hears nothing: no report says the host turned untrusted or stale, and
    no report answer brings the watch credential of the host's feed, so no revocation
    reaches it. Before the fix it accepted and confirmed the run "supervised": CMD then
    ran for as long as it liked, whatever was revoked. Now: usage (exit 2), nothing runs."""
    host, policy = ready
    never = tmp_path / "must-not-exist"
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with running_agent(host, base, pem) as (_sock, agent):
            done = attest_cli(host, "run", "--supervise", "--", "sh", "-c", f"touch {never}")
            assert done.returncode == 2, done.stderr
            assert "--interval" in done.stderr
            assert not never.exists()
            plain = attest_cli(host, "run", "--", "sh", "-c", "exit 4")
            assert plain.returncode == 4, plain.stderr  # unsupervised runs go on
            assert agent.poll() is None


def test_no_supervised_run_before_the_first_accepted_report() -> None:
    """The attack: ask a supervised run the moment the agent starts, before its first
    report is accepted. The watcher's first cursor comes with that report's answer, so a
    revocation of the run committed in between would be history to it, never acted on;
    and the host may already be untrusted at the verifier. Before the fix the agent's
    Supervisor admitted runs from the start, and an AgentTrust's first acceptance told
    nobody. Now the agent's Supervisor starts refusing (host_stale) and the first
    accepted report of a trusted host opens it, as `attest agent` wires them."""
    trust = AgentTrust(6.0, clock=lambda: 1000.0)
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append, lost=PENDING)
    trust.add_listener(supervisor)
    trust.add_restored(supervisor.on_trust_restored)
    try:
        supervisor.check_admissible()
    except TrustLost as exc:
        assert exc.reason == "host_stale"
    else:
        raise AssertionError("a supervised run admitted before any accepted report")
    # An accepted report, yet the verifier holds the host untrusted: still refused.
    trust.accepted(HostState("untrusted", ("reference_value_mismatch",), 3), None)
    assert supervisor.lost is not None and supervisor.lost[0] == "host_untrusted"
    trust.accepted(HostState("trusted", (), 3), None)
    supervisor.check_admissible()  # admitted now
    assert supervisor.lost is None and stops == []


def test_the_first_accepted_report_of_a_trusted_host_is_heard() -> None:
    """AgentTrust tells its restored callbacks of the first acceptance, once, logging no
    "restored" line (nothing was lost)."""
    trust = AgentTrust(6.0, clock=lambda: 1000.0)
    heard: list[bool] = []
    trust.add_restored(lambda: heard.append(True))
    assert trust.accepted(HostState("trusted", (), 3), None) == []
    assert trust.accepted(HostState("trusted", (), 3), None) == []
    assert heard == [True]


def test_a_client_whose_executable_reads_slowly_does_not_keep_reports_from_the_tpm(
        ready: tuple[Host, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a user of the agent (its own uid, or a --group member) hands it a
    descriptor on a file that reads slowly: up to 1 GiB of a sparse file, a file on a
    FUSE or network mount that answers at its own pace. The agent copies and hashes it
    into the sealed memfd; before the fix it did so holding the TPM lock, so the report
    loop waited for the copy (the ticket lock bounds the wait by "the run in hand",
    which the client made as long as it liked) and the host turned stale: every user's
    supervised runs stopped. The copy here is held back by a spy around the agent's
    seal (the client's file as slow as it likes); a report must get the TPM meanwhile."""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    sealing, release = threading.Event(), threading.Event()
    real_seal = agent_server.seal_opened

    def slow_seal(*args: Any, **kwargs: Any) -> Any:
        sealing.set()
        release.wait(timeout=2 * WAIT_S)  # the client's file, slow to read
        return real_seal(*args, **kwargs)

    monkeypatch.setattr(agent_server, "seal_opened", slow_seal)
    with open_tpm(host.sim.tcti) as tpm, served(policy, home) as base:
        remote = Remote(base, [result_keys.load(home).public_key()])
        agent = Agent(tpm, host.home, remote)
        trust = AgentTrust(60.0)
        reporter = Reporter(tpm, agent.tpm_lock, host.home, remote, 1.0, trust,
                            subject="agent", key_name="default", say=lambda _line: None)
        reporter.report_once()  # the policy's report_max_age gates the run on one
        shell = os.path.realpath(shutil.which("sh") or "/bin/sh")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            client = threading.Thread(target=agent.handle, args=(theirs,), daemon=True)
            client.start()
            try:
                ask_to_run_true(ours, shell)
                assert sealing.wait(timeout=WAIT_S), "the agent never sealed"
                report = threading.Thread(target=reporter.report_once, daemon=True)
                report.start()
                report.join(timeout=WAIT_S)
                assert not report.is_alive(), "the report waited for the client's copy"
                assert not release.is_set()
            finally:
                release.set()
            answer, sealed = wire.receive(ours)
            client.join(timeout=WAIT_S)
        if sealed is not None:
            os.close(sealed)
    assert answer.get("accepted") is True, answer
    assert trust.trusted


def test_a_run_revoked_between_its_acceptance_and_its_admission_is_refused() -> None:
    """The race: the verifier accepts a supervised run; its artifact is revoked at once;
    the watcher hears the revocation (on_revoked with its jti) before the agent has
    registered the run (admit comes after the verifier's answer is checked). The stop
    found no run of that jti, and the admission then registered it: a revoked run,
    supervised against nothing that would ever cut it again. Now the Supervisor
    remembers the jtis cut, and an admission of one is refused (the sealed copy is
    never handed back)."""
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    with subprocess.Popen(["sleep", "60"]) as child:
        try:
            supervisor.on_revoked(frozenset({"jti-1"}), "revoked")  # nothing to stop yet
            pidfd = os.pidfd_open(child.pid)
            run = SupervisedRun(jti="jti-1", pidfd=pidfd, pid=child.pid, grace=1.0,
                                subject="alice", program="sleep")
            try:
                supervisor.admit(run)
            except TrustLost as exc:
                assert exc.reason == "revoked"
                os.close(pidfd)  # refused: the caller keeps the pidfd
            else:
                raise AssertionError("a run revoked before its admission was admitted")
            other = SupervisedRun(jti="jti-2", pidfd=os.pidfd_open(child.pid),
                                  pid=child.pid, grace=1.0, subject="alice",
                                  program="sleep")
            supervisor.admit(other)  # another jti of the host goes on
            assert [r.jti for r in supervisor.runs()] == ["jti-2"]
        finally:
            child.kill()
            supervisor.close("host_stale", "the test ends")
    assert supervisor.lost is not None


def test_the_memory_of_cut_jtis_is_bounded() -> None:
    """A feed listing jtis by the thousand does not grow the agent without bound: the
    oldest are forgotten first (a forgotten one was long since admitted or refused)."""
    from attest.host.agent.supervisor import MAX_CUT_JTIS

    supervisor = Supervisor(lambda _stop: None)
    for start in range(0, 3 * MAX_CUT_JTIS, 1000):
        supervisor.on_revoked(frozenset(f"j{n}" for n in range(start, start + 1000)),
                              "revoked")
    assert supervisor.cut_jtis() <= MAX_CUT_JTIS


def test_a_client_trickling_its_request_does_not_hold_the_agent(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The attack: a user of the agent connects and sends its request one byte at a
    time, each within the 10 s a silent client is allowed. The agent answers one client
    at a time, so before the fix nobody else's `attest run` was answered for as long as
    the trickle lasted (a 1 MiB request: months). Now a request must arrive whole within
    10 s of the connection: the trickler is dropped and the next client is served."""
    host, policy = ready
    stop = threading.Event()
    with served(policy, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with running_agent(host, base, pem) as (sock, _agent):
            trickler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            trickler.connect(str(sock))

            def trickle() -> None:
                with contextlib.suppress(OSError):  # dropped by the agent: the point
                    trickler.sendall((1000).to_bytes(4, "big"))
                    while not stop.wait(1.0):
                        trickler.sendall(b" ")

            thread = threading.Thread(target=trickle, daemon=True)
            thread.start()
            try:
                # Bounded by attest_cli's own timeout (120 s): the trickle outlasts it.
                done = attest_cli(host, "run", "--", "sh", "-c", "exit 4")
                assert done.returncode == 4, done.stderr
            finally:
                stop.set()
                thread.join(timeout=30)
                trickler.close()
