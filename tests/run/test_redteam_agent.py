"""Red team of the host agent (issue 14), as a host user: get a command to run
"supervised" while nothing would ever stop it, or keep the agent's report loop from the
TPM. Real swtpm, real `attest serve` on loopback, real `attest agent` and `attest run`."""

from __future__ import annotations

from pathlib import Path

from attest.host.agent.reporting import AgentTrust, HostState
from attest.host.agent.supervision import PENDING
from attest.host.agent.supervisor import Stop, Supervisor, TrustLost
from tests.conftest import Host
from tests.run.conftest import attest_cli, ready
from tests.run.test_agent import _verifier_key, running_agent
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
