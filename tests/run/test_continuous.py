"""Continuous attestation end to end: a real swtpm, a real `attest serve` on loopback, a
real `attest agent --interval` process, real supervised `attest run --supervise` CMDs.
The verifier cuts (a revocation, the host untrusted) and the verifier's silence stop
supervised CMDs through the agent's report loop and its watcher of the host's feed; each
stop is in the host's audit log with its reason; unsupervised CMDs are never touched."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.run.test_agent import running_agent
from tests.run.test_agent_reports import (
    HOST_ID,
    WAIT_S,
    Said,
    _policy,
    _verifier_key,
    reporting_agent,
)
from tests.run.test_supervised import _stop_entries
from tests.server.serving import admin_token, served

__all__ = ["ready"]

HEEDS_TERM = "echo ready; exec sleep 120"
ADMITTED = r"\*\*\* supervised runs are admitted again \*\*\*"
_ACCEPTED = re.compile(r"attest: accepted \(([^)]+)\)")


@dataclass
class Run:
    """A CMD started by `attest run`: its process and the jti it was accepted under."""

    process: subprocess.Popen[str]
    jti: str

    def stopped_by(self, signum: int) -> None:
        """It exits by ``signum``, waited for at most WAIT_S."""
        assert self.process.wait(timeout=WAIT_S) == -signum

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@contextmanager
def running(host: Host, *args: str) -> Iterator[Run]:
    """`attest run ARGS -- sh -c HEEDS_TERM` once CMD said ready; killed afterwards."""
    child = subprocess.Popen([sys.executable, "-m", "attest.cli.main", "run", *args, "--",
                              "sh", "-c", HEEDS_TERM], env={**os.environ, **host.env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stderr is not None
        said = child.stderr.readline()
        found = _ACCEPTED.search(said)
        assert found, said + child.stderr.read()
        assert child.stdout.readline() == "ready\n"
        yield Run(child, found.group(1))
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


@dataclass
class Deployment:
    """The verifier (its base URL, home, an admin token) and the agent's stderr."""

    base: str
    home: Path
    token: str
    said: Said
    agent: subprocess.Popen[str]
    verifier: ExitStack  # closing it stops `attest serve`

    def revoke(self, kind: str, subject: str) -> None:
        body = json.dumps({"kind": kind, "subject": subject, "reason": "test"}).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.base}/v1/revocations", data=body,
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            assert answer.status == 200


@contextmanager
def deployed(ready: tuple[Host, Path], tmp_path: Path, *agent_args: str
             ) -> Iterator[Deployment]:
    """`attest serve` (report_max_age 3 s) and `attest agent --interval 500ms
    --max-silence 3s` on the host, once the agent admits supervised runs (its first
    report accepted)."""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    with ExitStack() as verifier:
        base = verifier.enter_context(served(policy, home))
        pem = _verifier_key(home, tmp_path)
        token = admin_token(home)
        with reporting_agent(host, base, pem, "--interval", "500ms",
                             "--max-silence", "3s", *agent_args) as (
                said, agent):
            said.wait(ADMITTED)
            yield Deployment(base, home, token, said, agent, verifier)


def _stops(host: Host) -> list[tuple[object, object, object]]:
    host.ok("audit", "verify")
    return [(e["jti"], e["reasons"], e["signals"]) for e in _stop_entries(host.home)]


def test_a_revoked_artifacts_supervised_cmd_is_stopped_and_the_others_go_on(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """An administrator revokes one supervised run's jti: that CMD gets SIGTERM through
    the agent's feed; another supervised CMD and an unsupervised one go on; the stop is in
    the host's audit log (reason revoked) and on the agent's stderr. Then the host itself
    is revoked: every supervised CMD stops, new supervised runs are refused, and the
    unsupervised CMD is still untouched."""
    host = ready[0]
    never = tmp_path / "must-not-exist"
    with deployed(ready, tmp_path) as at, running(host) as plain, \
            running(host, "--supervise", "--grace", "2s") as cut, \
            running(host, "--supervise", "--grace", "2s") as kept:
        at.revoke("jti", cut.jti)
        cut.stopped_by(signal.SIGTERM)
        line = at.said.wait(rf"stopped sh \(pid {cut.process.pid}, ")
        assert ": revoked: revoked jti " in at.said.lines[line], at.said.lines[line]
        assert kept.running and plain.running

        at.revoke("host", HOST_ID)
        kept.stopped_by(signal.SIGTERM)
        refused = attest_cli(host, "run", "--supervise", "--", "sh", "-c", f"touch {never}")
        assert refused.returncode == 1, refused.stderr
        assert plain.running
    assert not never.exists()
    stops = _stops(host)
    assert stops[:2] == [(cut.jti, ["revoked"], ["SIGTERM"]),
                         (kept.jti, [stops[1][1][0]], ["SIGTERM"])]
    # The host's revocation reaches the agent by its feed (revoked) or by its next report,
    # denied (host_untrusted or the denial's own code): either is a stop of everything.
    assert stops[1][1][0] in ("revoked", "host_untrusted"), stops


def test_revoking_the_signing_key_stops_the_runs_issued_under_it(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """A signing key revoked (an ancestor in authority of every artifact it signed): the
    feed lists the jtis under it on this host, and their supervised CMDs stop."""
    host = ready[0]
    with deployed(ready, tmp_path) as at, running(host) as plain, \
            running(host, "--supervise", "--grace", "1s") as supervised:
        kid = _kid(host)
        at.revoke("key", kid)
        supervised.stopped_by(signal.SIGTERM)
        assert plain.running
    assert _stops(host)[0][0] == supervised.jti


def _kid(host: Host) -> str:
    """The default signing key's TPM name (the JWS kid), from `attest key list --json`."""
    listed = json.loads(host.ok("key", "list", "--json").output)
    [found] = [k["tpm_name"] for k in listed if k["name"] == "default"]
    return str(found)


def test_an_unexpected_measurement_turns_the_host_untrusted_and_stops_supervised_cmd(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """`attest measure` of something the policy does not expect: the agent's next report
    is denied, the host untrusted, the supervised CMD stopped (host_untrusted), new
    supervised runs refused; the unsupervised CMD goes on."""
    host = ready[0]
    never = tmp_path / "must-not-exist"
    with deployed(ready, tmp_path) as at, running(host) as plain, \
            running(host, "--supervise", "--grace", "1s") as supervised:
        host.ok("measure", "data", "--name", "unexpected", "--value", "x")
        supervised.stopped_by(signal.SIGTERM)
        at.said.wait(r"TRUST LOST: host_untrusted")
        refused = attest_cli(host, "run", "--supervise", "--", "sh", "-c", f"touch {never}")
        assert refused.returncode == 1, refused.stderr
        assert "host_untrusted" in refused.stderr
        assert plain.running
    assert not never.exists()
    # Heard twice (the denied report, and the host_state event on the feed), stopped once.
    assert _stops(host) == [(supervised.jti, ["host_untrusted"], ["SIGTERM"])]


def test_an_unreachable_verifier_stops_supervised_cmd_after_the_allowed_age(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """`attest serve` stopped: no report is accepted any more; once report_max_age (3 s)
    has passed since the last accepted one, the supervised CMD is stopped (host_stale),
    the unsupervised one goes on, and the agent lives on saying why."""
    host = ready[0]
    with deployed(ready, tmp_path) as at, running(host) as plain, \
            running(host, "--supervise", "--grace", "1s") as supervised:
        at.verifier.close()
        supervised.stopped_by(signal.SIGTERM)
        lost = at.said.wait(r"TRUST LOST: host_stale: no report accepted for")
        assert "(allowed 3 s)" in at.said.lines[lost]
        assert plain.running and at.agent.poll() is None
    # Heard at every check while lost, stopped once.
    assert _stops(host) == [(supervised.jti, ["host_stale"], ["SIGTERM"])]


def test_sigterm_stops_the_agent_its_threads_and_its_supervised_cmd(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The agent stopped with SIGTERM while reporting and watching: it exits 0 within the
    bound, without a traceback (its report loop and watcher ended, so nothing keeps it),
    its supervised CMD stops with it (host_stale: nothing supervises it any more), the
    unsupervised one goes on."""
    host = ready[0]
    with deployed(ready, tmp_path) as at, running(host) as plain, \
            running(host, "--supervise", "--grace", "1s") as supervised:
        at.agent.send_signal(signal.SIGTERM)
        supervised.stopped_by(signal.SIGTERM)
        assert at.agent.wait(timeout=WAIT_S) == 0
        assert plain.running
        at.said.wait(r"attest agent: stopped$")
    assert _stops(host)[0] == (supervised.jti, ["host_stale"], ["SIGTERM"])


def test_supervise_needs_an_agent_with_interval(ready: tuple[Host, Path],
                                                tmp_path: Path) -> None:
    """An agent without --interval sends no reports and opens no feed: nothing could tell
    it to stop a run, so `attest run --supervise` is refused (exit 2, the hint names
    --interval) before anything is measured, and CMD never runs; plain runs still work."""
    host, from_host = ready
    never = tmp_path / "must-not-exist"
    with served(from_host, tmp_path / "verifier") as base:
        pem = _verifier_key(tmp_path / "verifier", tmp_path)
        with running_agent(host, base, pem):
            refused = attest_cli(host, "run", "--supervise", "--", "sh", "-c",
                                 f"touch {never}")
            assert refused.returncode == 2, refused.stderr
            assert "--interval" in refused.stderr and "does not supervise" in refused.stderr
            plain = attest_cli(host, "run", "--", "sh", "-c", "exit 5")
            assert plain.returncode == 5, plain.stderr
    assert not never.exists()


def test_no_thread_of_the_wiring_outlives_its_stop(ready: tuple[Host, Path],
                                                   tmp_path: Path) -> None:
    """In-process: Continuous.wire on the host's TPM against a real verifier; started,
    the report loop admits supervised runs and the watcher opens the feed; stopped, both
    threads are gone."""
    from attest.ear import keys as result_keys
    from attest.host.agent.continuous import Continuous
    from attest.host.agent.reporting import AgentTrust, Reporter
    from attest.host.agent.supervisor import Supervisor
    from attest.host.agent.turns import TurnLock
    from attest.host.run import Remote
    from attest.tpm.device import open_tpm
    from tests.run.test_agent_reports import _until

    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    supervisor = Supervisor(lambda _stop: None)
    lines: list[str] = []
    with open_tpm(host.sim.tcti) as tpm, served(policy, home) as base:
        remote = Remote(base, [result_keys.load(home).public_key()])

        def reporter(trust: AgentTrust) -> Reporter:
            return Reporter(tpm, TurnLock(), host.home, remote, 0.3, trust, subject="agent",
                            key_name="default", say=lines.append)

        continuous = Continuous.wire(supervisor, reporter, base, 6.0)
        assert supervisor.lost is not None  # nothing accepted yet
        continuous.start()
        try:
            _until("supervised runs admitted", lambda: supervisor.lost is None)
            _until("the feed open", lambda: continuous.watcher.streams > 0)
        finally:
            continuous.stop()
    names = {t.name for t in threading.enumerate()}
    assert not names & {"attest-watch", "attest-agent-reports"}, names
    assert not [line for line in lines if "failed" in line], lines


def test_a_tpm_that_will_not_sign_is_silence_and_stops_supervised_cmd(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """A sealed PCR extended under the agent: the TPM refuses the report key's policy, so
    every report fails on the host (no decision at all); once no report was accepted for
    the allowed age the supervised CMD is stopped (host_stale), as for an unreachable
    verifier: a TPM error is never read as trust."""
    host = ready[0]
    with deployed(ready, tmp_path) as at, running(host) as plain, \
            running(host, "--supervise", "--grace", "1s") as supervised:
        host.ok("pcr", "extend", "0", "--data", "a boot component changed")
        supervised.stopped_by(signal.SIGTERM)
        failed = at.said.wait(r"report failed: ")
        at.said.wait(r"TRUST LOST: host_stale: no report accepted for", after=failed)
        assert plain.running and at.agent.poll() is None
    assert _stops(host)[0] == (supervised.jti, ["host_stale"], ["SIGTERM"])
