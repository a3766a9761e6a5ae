"""`attest agent --interval`: the agent's periodic reports (attest.host.agent.reporting),
on a real swtpm to a real `attest serve` on loopback, and the agent's own view of its
trust, whose listeners hear every loss (a denied report, an untrusted or stale host,
a verifier silent past the allowed age)."""

from __future__ import annotations

import http.server
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner

from attest.cli.main import cli
from attest.decision import Decision, Denial
from attest.durations import parse_seconds
from attest.ear import keys as result_keys
from attest.host.agent import wire
from attest.host.agent.reporting import (
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    AgentTrust,
    HostState,
    Reporter,
)
from attest.host.agent.turns import TurnLock
from attest.host.run import Remote
from attest.reasons import Reason
from attest.tpm.device import open_tpm
from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.run.test_agent import ask_to_run_true
from tests.server.serving import admin_token, served

__all__ = ["ready"]

HOST_ID = os.uname().nodename  # what `policy init --from-host` names the host
MAX_AGE = 3  # the policy's report_max_age, seconds: short, so that stale comes soon
WAIT_S = 30.0  # the bound on every wait for something the agent or verifier does


# -- the agent's view, on a clock the test moves -------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Heard:
    """A TrustListener that keeps what it hears, for a test to wait on."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[str, str]] = queue.Queue()

    def on_trust_lost(self, reason_code: str, message: str) -> None:
        self.calls.put((reason_code, message))

    def next(self, code: str | None = None) -> tuple[str, str]:
        """The next call (with ``code``, when given), waited for at most WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no on_trust_lost({code!r}) within {WAIT_S} s"
            try:
                call = self.calls.get(timeout=left)
            except queue.Empty:
                continue
            if code is None or call[0] == code:
                return call

    def none(self) -> bool:
        return self.calls.empty()


TRUSTED = HostState("trusted", (), MAX_AGE)


def test_silence_past_max_silence_before_any_answer_is_stale() -> None:
    clock, heard = Clock(), Heard()
    trust = AgentTrust(6.0, clock=clock)
    trust.add_listener(heard)
    clock.now += 5
    assert trust.failed("the verifier is unreachable") == []
    assert heard.none() and not trust.trusted
    clock.now += 2  # 7 s without an answer, 6 allowed
    logged = trust.failed("the verifier is unreachable")
    code, message = heard.next()
    assert code == Reason.HOST_STALE.value and "unreachable" in message
    assert logged and logged[0].startswith("TRUST LOST: host_stale")
    # Still lost at the next check: heard again (idempotent listeners), logged once.
    assert trust.check_silence() == []
    assert heard.next()[0] == "host_stale"


def test_once_answered_the_verifiers_report_max_age_is_the_allowed_silence() -> None:
    clock, heard = Clock(), Heard()
    restored: list[bool] = []
    trust = AgentTrust(60.0, clock=clock)
    trust.add_listener(heard)
    trust.add_restored(lambda: restored.append(True))
    assert trust.accepted(TRUSTED, {"token": "t", "expires_at": 5}) == []
    assert trust.trusted and trust.watch == {"token": "t", "expires_at": 5}
    clock.now += MAX_AGE
    assert trust.check_silence() == [] and heard.none()
    clock.now += 1  # past the verifier's age, long before the agent's own 60 s
    assert not trust.trusted  # even before a check has said so
    assert trust.check_silence()
    assert heard.next()[0] == "host_stale" and not trust.trusted
    # An accepted report brings it back, and says so.
    assert trust.accepted(TRUSTED, None) == ["TRUST RESTORED: the verifier accepted a report"]
    # Heard at the first acceptance (trust came) and now (it came back).
    assert trust.trusted and restored == [True, True]
    assert trust.watch == {"token": "t", "expires_at": 5}  # absent: the last one kept


def test_an_answered_report_max_age_never_stretches_the_agents_own_silence() -> None:
    """Attack (a rewritten answer: --insecure http, or anything between): one genuinely
    accepted answer says report_max_age 86400, then all traffic is dropped. The unsigned
    age only shortens the allowed silence: the agent's own --max-silence (60 s) holds."""
    clock, heard = Clock(), Heard()
    trust = AgentTrust(60.0, clock=clock)
    trust.add_listener(heard)
    trust.accepted(HostState("trusted", (), 86400), None)
    assert trust.allowed_age() == 60.0
    clock.now += 61
    assert not trust.trusted
    said = trust.failed("the verifier is unreachable")
    assert said and "(allowed 60 s)" in said[0], said
    assert heard.next()[0] == "host_stale"


def test_the_agent_counts_its_trust_from_before_the_challenge_not_the_answer() -> None:
    """The verifier counts a report fresh from its challenge's issue time; the agent from
    when it asked for that challenge, not when the answer came back (a slow quote or
    POST would otherwise keep it trusted after the verifier holds it stale)."""
    clock, heard = Clock(), Heard()
    trust = AgentTrust(10.0, clock=clock)
    trust.add_listener(heard)
    asked = trust.now()
    clock.now += 4  # the quote and the POST took 4 s
    trust.accepted(HostState("trusted", (), None), None, asked_at=asked)
    assert trust.deadline() == asked + 10.0
    clock.now = asked + 10.5  # 6.5 s after the answer, 10.5 s after the challenge
    assert not trust.trusted
    assert trust.check_silence() and heard.next()[0] == "host_stale"


def test_a_denied_report_or_a_host_held_untrusted_loses_trust() -> None:
    heard = Heard()
    trust = AgentTrust(60.0, clock=Clock())
    trust.add_listener(heard)
    trust.accepted(TRUSTED, None)
    mismatch = Decision(False, (Denial(Reason.REFERENCE_VALUE_MISMATCH, "cat"),))
    trust.denied(mismatch, HostState("untrusted", ("reference_value_mismatch",), 10**9))
    code, message = heard.next()
    assert code == "host_untrusted" and "reference_value_mismatch" in message
    # The denied answer's (unsigned) age was not believed.
    assert trust.allowed_age() == MAX_AGE
    # Good evidence, yet the verifier holds the host untrusted (a report held back).
    trust.accepted(HostState("untrusted", ("reference_value_mismatch",), MAX_AGE), None)
    assert heard.next()[0] == "host_untrusted" and not trust.trusted
    # A denial without a host state: its own reason.
    trust.denied(Decision(False, (Denial(Reason.INVALID_SIGNATURE, "forged"),)), None)
    assert heard.next() == ("invalid_signature", "report denied: invalid_signature: forged")


def test_a_failing_listener_is_logged_and_the_others_still_hear() -> None:
    class Broken:
        def on_trust_lost(self, reason_code: str, message: str) -> None:
            raise RuntimeError("supervisor bug")

    heard = Heard()
    trust = AgentTrust(60.0, clock=Clock())
    trust.add_listener(Broken())
    trust.add_listener(heard)
    logged = trust.denied(Decision(False, (Denial(Reason.SCOPE_ESCALATION, "no rule"),)), None)
    assert heard.next()[0] == "scope_escalation"
    assert any("a trust listener failed: RuntimeError: supervisor bug" in x for x in logged)


def test_host_states_from_hostile_answers_are_bounded() -> None:
    odd = HostState.from_answer({"host_state": {"state": "fine", "reasons": ["x" * 999] * 99,
                                                "report_max_age": 10**12}})
    assert odd is not None and odd.state == "untrusted"  # unknown is not trust
    assert len(odd.reasons) == 16 and len(odd.reasons[0]) == 64
    assert odd.report_max_age == 86400
    for age in (True, -1, 0, "10", 1.5):
        found = HostState.from_answer({"host_state": {"state": "trusted",
                                                      "report_max_age": age}})
        assert found is not None and found.report_max_age is None
    assert HostState.from_answer({"host_state": "trusted"}) is None


def test_a_report_loop_that_breaks_is_a_loss_of_trust(tmp_path: Path) -> None:
    """A bug in the loop ends the reports, so nothing would notice a loss any more: it
    is one itself (internal_error), said on stderr."""
    class Breaking(AgentTrust):
        def deadline(self) -> float:
            raise RuntimeError("a bug")

    heard = Heard()
    trust = Breaking(60.0)
    trust.add_listener(heard)
    lines: list[str] = []
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: each report fails at its challenge
    # No TPM: a report that cannot get a challenge never reaches it.
    reporter = Reporter(None, TurnLock(), tmp_path, Remote(  # type: ignore[arg-type]
        f"http://127.0.0.1:{port}", []), 0.2, trust, subject="agent", key_name="default",
        say=lines.append)
    reporter.start()
    try:
        assert heard.next() == ("internal_error", "the agent's report loop stopped")
    finally:
        reporter.stop()
    assert lines[0].startswith("report failed: the verifier at"), lines
    assert "the report loop stopped: internal error: RuntimeError: a bug" in lines


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("2", 2.0),
                                               ("1m", 60.0), ("1h", 3600.0), ("200ms", 0.2)])
def test_intervals_people_write(text: str, seconds: float) -> None:
    assert parse_seconds(text, minimum=MIN_INTERVAL_S, maximum=MAX_INTERVAL_S) == seconds


@pytest.mark.parametrize(("args", "said"), [
    (["--interval", "100ms"], "shorter than the shortest duration, 200ms"),
    (["--interval", "2h"], "longer than the longest duration, 1h"),
    (["--interval", "0"], "shorter than the shortest"),
    (["--interval", "1.5s"], "expected a duration like"),
    (["--interval", "-2s"], "expected a duration like"),
    (["--interval", "2s\x1b[31m"], "expected a duration like"),
    (["--interval", "2s", "--max-silence", "1s"], "shorter than --interval"),
    (["--max-silence", "10s"], "give --interval too"),
    (["--interval", "2s", "--report-key", "absent"], "no signing key named 'absent'"),
])
def test_bad_intervals_are_usage_errors_and_nothing_listens(tmp_path: Path, args: list[str],
                                                            said: str) -> None:
    done = CliRunner().invoke(cli, ["--home", str(tmp_path), "agent", "--verifier",
                                    "http://127.0.0.1:9", *args])
    assert done.exit_code == 2, done.output
    assert said in done.output
    assert "\x1b" not in done.output
    assert not (tmp_path / wire.SOCKET_NAME).exists()


# -- a real agent, a real verifier -----------------------------------------------------------
def _policy(host: Host, policy: Path, tmp_path: Path) -> Path:
    """``policy`` (from the host) with freshness.report_max_age and reports allowed."""
    data = yaml.safe_load(policy.read_text())
    data["freshness"]["report_max_age"] = MAX_AGE
    for rule in data["rules"]:
        rule["actions"] = ["exec", "report"]
    out = tmp_path / "continuous.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def _verifier_key(home: Path, tmp_path: Path) -> Path:
    pem = tmp_path / "verifier.pem"
    pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
    return pem


def _host_state(base: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/v1/hosts/{HOST_ID}",  # noqa: S310 - loopback
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        found: dict[str, Any] = json.loads(answer.read())
    return found


def _until(what: str, check: Any) -> Any:
    """``check()`` once it is truthy, tried until WAIT_S have passed."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


class Said:
    """The agent's stderr, read line by line in a thread: a test waits for a line."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait(self, pattern: str, after: int = 0) -> int:
        """The index of the first line from ``after`` on matching ``pattern``."""
        found = re.compile(pattern)
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if found.search(self.lines[index]):
                        return index
                left = deadline - time.monotonic()
                assert left > 0, f"no line {pattern!r} in:\n" + "\n".join(self.lines)
                self._changed.wait(left)

    def close(self) -> str:
        self._thread.join(timeout=30)
        return "\n".join(self.lines)


@contextmanager
def reporting_agent(host: Host, base: str, pem: Path,
                    *extra: str) -> Iterator[tuple[Said, subprocess.Popen[str]]]:
    """`attest agent` as a user starts it (``extra`` its options, by default
    --interval 500ms), its stderr read as it goes."""
    agent = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "agent", "--verifier", base,
         "--verifier-key", str(pem), *(extra or ("--interval", "500ms"))],
        env={**os.environ, **host.env}, stderr=subprocess.PIPE, text=True)
    assert agent.stderr is not None
    said = Said(agent.stderr)
    try:
        said.wait("listening on")
        yield said, agent
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        everything = said.close()
        assert "Traceback" not in everything, everything


def test_the_agents_reports_keep_the_host_trusted_until_it_measures_the_unexpected(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """Reports accepted (the host trusted at the verifier); a stopped agent turns the host
    stale; a new agent's report brings it back; an unexpected measurement turns it
    untrusted within an interval, and its next run through the agent is denied."""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    never = tmp_path / "must-not-exist"
    with served(policy, home) as base:
        pem = _verifier_key(home, tmp_path)
        token = admin_token(home)
        with reporting_agent(host, base, pem) as (said, _agent):
            said.wait(r"report accepted, host trusted")
            seen = _host_state(base, token)
            assert seen["state"] == "trusted" and seen["last_report_at"], seen
            ran = attest_cli(host, "run", "--", "sh", "-c", "true")
            assert ran.returncode == 0, ran.stderr
        # The agent stopped: no report within report_max_age, and the verifier says stale.
        stale = _until("the host stale", lambda: (s := _host_state(base, token))["state"]
                       == "stale" and s)
        assert stale["denial"]["reason"] == "host_stale"
        with reporting_agent(host, base, pem) as (said, agent):
            said.wait(r"report accepted, host trusted")
            host.ok("measure", "data", "--name", "unexpected", "--value", "x")
            lost = said.wait(r"\*\*\* TRUST LOST: host_untrusted: .*reference_value_mismatch")
            assert "report denied: reference_value_mismatch, host untrusted" in "\n".join(
                said.lines[:lost + 1])
            seen = _host_state(base, token)
            assert seen["state"] == "untrusted"
            assert seen["reasons"] == ["reference_value_mismatch"]
            denied = attest_cli(host, "run", "--", "sh", "-c", f"touch {never}")
            assert denied.returncode == 1, denied.stderr
            assert "host_untrusted" in denied.stderr
            assert not never.exists()
            assert agent.poll() is None  # the agent lives on, reporting the truth
            said.wait(r"report denied: reference_value_mismatch", after=lost + 1)


def test_the_listener_hears_a_verifier_silent_past_its_report_max_age(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The report loop in-process, on the host's TPM: reports accepted (the verifier's
    report_max_age learnt); the verifier gone, the listener hears host_stale once no
    report was accepted for that long (fail closed), not before, and not the agent's
    own, longer, default."""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    heard = Heard()
    trust = AgentTrust(60.0)  # the verifier's MAX_AGE, once answered, not these 60
    trust.add_listener(heard)
    lines: list[str] = []
    reporter = None
    with open_tpm(host.sim.tcti) as tpm:
        try:
            with served(policy, home) as base:
                remote = Remote(base, [result_keys.load(home).public_key()])
                reporter = Reporter(tpm, TurnLock(), host.home, remote, 0.3, trust,
                                    subject="agent", key_name="default", say=lines.append)
                reporter.start()
                _until("a trusted host", lambda: trust.trusted)
                assert trust.allowed_age() == MAX_AGE and heard.none()
            code, message = heard.next()
            assert code == "host_stale", (code, message)
            assert "no report accepted for" in message and "unreachable" in message
            assert not trust.trusted
        finally:
            if reporter is not None:
                reporter.stop()
    assert any(line.startswith("report failed: ") for line in lines), lines
    assert any(line.startswith("*** TRUST LOST: host_stale") for line in lines), lines


class _Forger(http.server.BaseHTTPRequestHandler):
    """A verifier's impostor: challenges, then an acceptance with no signed result and a
    host state (``state``) that would stretch the allowed silence to a day."""

    state: ClassVar[dict[str, Any]] = {"state": "trusted", "reasons": [], "report_max_age": 86400}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        answer = ({"nonce": "AAAAAAAAAAAAAAAAAAAAAA", "expires": 2**40}
                  if self.path == "/v1/challenges" else
                  {"accepted": True, "reasons": [], "denials": [],
                   "facts": {"runtime_log": {"count": 99, "digest": "0" * 64}},
                   "host_state": self.state,
                   "watch": {"token": "stolen", "expires_at": 2**40}})
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        del args


def _forged(host: Host, tmp_path: Path, state: dict[str, Any]) -> tuple[
        AgentTrust, Heard, list[str]]:
    """One report to a _Forger answering ``state``: the agent's view, what its listener
    heard, what it said."""
    handler = type("Forger", (_Forger,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    heard = Heard()
    trust = AgentTrust(60.0)
    trust.add_listener(heard)
    lines: list[str] = []
    try:
        with open_tpm(host.sim.tcti) as tpm:
            remote = Remote(f"http://127.0.0.1:{server.server_address[1]}",
                            [result_keys.load_or_create(tmp_path).public_key()])
            Reporter(tpm, TurnLock(), host.home, remote, 1.0, trust, subject="agent",
                     key_name="default", say=lines.append).report_once()
    finally:
        server.shutdown()
        server.server_close()
    return trust, heard, lines


def test_an_unsigned_acceptance_is_a_loss_of_trust(ready: tuple[Host, Path],
                                                   tmp_path: Path) -> None:
    """The attacker answering in the verifier's place (a forged JSON acceptance): the
    agent believes only a signed result, so this is invalid_signature, trust lost; its
    host state, watch credential and runtime log prefix are not kept."""
    host, _ = ready
    trust, heard, lines = _forged(host, tmp_path, _Forger.state)
    code, message = heard.next()
    assert code == "invalid_signature" and "signed attestation result" in message
    assert not trust.trusted and trust.watch is None and trust.allowed_age() == 60.0
    memory = host.home / "runtime.prefixes"
    assert not memory.exists() or '"count": 99' not in memory.read_text()
    assert lines[0] == "report denied: invalid_signature", lines


def test_runs_through_the_agent_and_its_reports_take_turns_at_the_tpm(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """Reports every 200 ms while clients ask for runs, several at once: every run is
    decided and every report too. (Issuance also holds the runtime log's lock, so this
    does not single out the TPM lock: the next test does.)"""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    with served(policy, home) as base:
        pem = _verifier_key(home, tmp_path)
        with reporting_agent(host, base, pem, "--interval", "200ms") as (said, agent):
            first = said.wait(r"report accepted, host trusted")
            runs = [subprocess.Popen([sys.executable, "-m", "attest.cli.main", "run", "--",
                                      "sh", "-c", "true"], env={**os.environ, **host.env},
                                     stderr=subprocess.PIPE, text=True) for _ in range(6)]
            outcomes = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "")
                        for run in runs]
            for run in runs:
                if run.stderr:
                    run.stderr.close()
            assert [code for code, _ in outcomes] == [0] * 6, outcomes
            later = said.wait(r"report accepted, host trusted", after=first + 1)
            said.wait(r"report accepted, host trusted", after=later + 1)
            assert agent.poll() is None
            assert not [line for line in said.lines if "report failed" in line
                        or "TRUST LOST" in line], said.lines


def test_the_report_loop_uses_the_tpm_only_under_the_agents_lock(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """Every TPM command of a report (each goes through TPM.call) is sent while the lock
    the agent's clients also take is held: ESAPI and the connection's caches are not
    thread-safe. Observed on the real TPM, not replaced."""
    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    lock = TurnLock()
    held: list[bool] = []
    trust = AgentTrust(60.0)
    with open_tpm(host.sim.tcti) as tpm, served(policy, home) as base:
        real = tpm.call

        def call(what: str, *args: Any, **kwargs: Any) -> Any:
            held.append(lock.locked())
            return real(what, *args, **kwargs)

        tpm.call = call  # type: ignore[method-assign]
        remote = Remote(base, [result_keys.load(home).public_key()])
        lines: list[str] = []
        # An interval as long as the verifier's report_max_age: warned of, once.
        reporter = Reporter(tpm, lock, host.home, remote, float(MAX_AGE), trust,
                            subject="agent", key_name="default", say=lines.append)
        reporter.report_once()
        reporter.report_once()
    assert trust.trusted, trust.last_error
    assert held and all(held), held
    assert [line for line in lines if line.startswith("warning:")] == [
        f"warning: the verifier's report_max_age ({MAX_AGE} s) is not longer than "
        f"--interval ({MAX_AGE} s): the host turns stale between reports"], lines
    assert lines.count("report accepted, host trusted") == 2, lines


def test_a_clients_authorization_uses_the_tpm_only_under_the_same_lock(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """The other side of the lock: the agent answering a client (in-process, over a
    socket pair) sends every TPM command while holding Agent.tpm_lock, the lock the
    report loop takes."""
    import shutil

    from attest.host.agent.server import Agent

    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    home = tmp_path / "verifier"
    held: list[bool] = []
    with open_tpm(host.sim.tcti) as tpm, served(policy, home) as base:
        remote = Remote(base, [result_keys.load(home).public_key()])
        agent = Agent(tpm, host.home, remote)
        real = tpm.call

        def call(what: str, *args: Any, **kwargs: Any) -> Any:
            held.append(agent.tpm_lock.locked())
            return real(what, *args, **kwargs)

        tpm.call = call  # type: ignore[method-assign]
        # A report first: the policy's report_max_age gates the run on it.
        Reporter(tpm, agent.tpm_lock, host.home, remote, 1.0, AgentTrust(60.0),
                 subject="agent", key_name="default", say=lambda _line: None).report_once()
        shell = os.path.realpath(shutil.which("sh") or "/bin/sh")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            worker = threading.Thread(target=agent.handle, args=(theirs,), daemon=True)
            worker.start()
            ask_to_run_true(ours, shell)
            answer, sealed = wire.receive(ours)
            worker.join(timeout=WAIT_S)
        if sealed is not None:
            os.close(sealed)
    assert answer.get("accepted") is True, answer
    assert held and all(held), held


def test_a_verifier_that_lost_the_prefix_gets_the_whole_log(ready: tuple[Host, Path],
                                                            tmp_path: Path) -> None:
    """The prefix memory names a prefix of this host's log that this verifier does not
    hold (another verifier's, as after a move to a new store): denied
    log_prefix_unknown, the report is issued again from the whole log with the same
    challenge, and accepted; what it acknowledged is remembered."""
    from attest.host.runtime.log import RuntimeLog
    from attest.host.runtime.prefixes import PrefixMemory

    host, from_host = ready
    policy = _policy(host, from_host, tmp_path)
    epoch = RuntimeLog(host.home).read_epoch()
    lines: list[str] = []
    with open_tpm(host.sim.tcti) as tpm:
        def report(home: Path, base: str) -> AgentTrust:
            trust = AgentTrust(60.0)
            remote = Remote(base, [result_keys.load(home).public_key()])
            Reporter(tpm, TurnLock(), host.home, remote, 1.0, trust, subject="agent",
                     key_name="default", say=lines.append).report_once()
            return trust

        with served(policy, tmp_path / "first") as first:
            assert report(tmp_path / "first", first).trusted, lines
            held = PrefixMemory(host.home).get(f"url:{first}", epoch)
        assert held is not None
        host.ok("measure", "command", "--", "sh", "-c", "true")  # after the prefix: sent
        with served(policy, tmp_path / "second") as second:
            PrefixMemory(host.home).put(f"url:{second}", epoch, held)
            trust = report(tmp_path / "second", second)
            known = PrefixMemory(host.home).get(f"url:{second}", epoch)
    assert lines == ["report accepted, host trusted"] * 2, lines
    assert trust.trusted
    assert known is not None and known.count > held.count


def test_what_a_hostile_verifier_says_is_escaped_on_one_line(ready: tuple[Host, Path],
                                                              tmp_path: Path) -> None:
    """Reasons chosen by whoever answers (terminal escapes, a newline to forge a log
    line) reach stderr escaped and bounded; the loss is heard all the same."""
    host, _ = ready
    evil = "\x1b[2J\n*** TRUST RESTORED: forged ***" + "x" * 200
    trust, heard, lines = _forged(host, tmp_path, {"state": "untrusted",
                                                   "reasons": [evil]})
    assert heard.next()[0] == "host_untrusted" and not trust.trusted
    assert lines and all("\x1b" not in line and "\n" not in line for line in lines), lines
    assert any("\\x1b[2J\\x0a*** TRUST RESTORED" in line for line in lines), lines
    assert not any(line.startswith("*** TRUST RESTORED") for line in lines)
