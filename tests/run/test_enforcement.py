"""attest.host.agent.continuous.Enforcement on real processes and a real Supervisor (no
TPM involved): when the report loop's word and the feed's cuts stop supervised runs and
when they admit them again; each rule tried the way an attacker on the wire (an answer
decided before a revocation, a feed cut off) would go around it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from attest.host.agent.continuous import NOT_YET, ContinuousTrust, Enforcement
from attest.host.agent.reporting import HostState
from attest.host.agent.stops import StopLog
from attest.host.agent.supervisor import Stop, Supervisor
from attest.host.agent.watch import CredentialSlot
from tests.run.test_supervisor import HEEDS_TERM, process, run_of

FEED = "/v1/hosts/web-1/events"


@dataclass
class Feed:
    """What Enforcement reads of the watcher, set by the test."""

    cursor: int | None = None
    last_contact: float | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _enforcement(silence: float = 45.0) -> tuple[Enforcement, Supervisor, Feed, Clock,
                                                 list[Stop]]:
    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    clock, feed = Clock(), Feed()
    enforcement = Enforcement(supervisor, feed_silence=silence, clock=clock)
    enforcement.feed = feed
    return enforcement, supervisor, feed, clock, stops


def test_supervised_runs_wait_for_the_first_accepted_report() -> None:
    enforcement, supervisor, _feed, _clock, _stops = _enforcement()
    assert supervisor.lost == ("host_stale", NOT_YET)
    assert enforcement.report_accepted(3, has_feed=True) == [
        "supervised runs are admitted again"]
    assert supervisor.lost is None
    assert enforcement.report_accepted(4, has_feed=True) == []  # said once


def test_without_a_feed_supervised_runs_are_refused() -> None:
    """A verifier whose accepted answers carry no watch credential: reports alone would
    never hear a revoked artifact, so supervised runs stay refused (host_stale)."""
    enforcement, supervisor, _feed, _clock, _stops = _enforcement()
    said = enforcement.report_accepted(None, has_feed=False)
    assert said and "no watch credential" in said[0]
    assert supervisor.lost is not None and supervisor.lost[0] == "host_stale"
    assert "no watch credential" in supervisor.lost[1]


def test_a_feed_cut_holds_until_an_answer_made_after_it() -> None:
    """The host revoked (event 8, the watcher's cursor at 7): an accepted report answered
    before the revocation (its watch.after 6) does not readmit supervised runs; nor does
    one while the cut is not yet handled; one answered after it (after >= 8) does."""
    enforcement, supervisor, feed, clock, _stops = _enforcement()
    enforcement.report_accepted(5, has_feed=True)
    feed.cursor, feed.last_contact = 7, clock.now
    with process(HEEDS_TERM) as child:
        supervisor.admit(run_of(child, "j1"))
        enforcement.on_revoked(None, "revoked host web-1: stolen")
        assert child.wait(timeout=30) < 0
    assert supervisor.lost == ("revoked", "revoked host web-1: stolen")
    assert enforcement.report_accepted(6, has_feed=True) == []  # decided before event 8
    assert enforcement.report_accepted(9, has_feed=True) == []  # the cut not yet handled
    feed.cursor = 8  # the watcher moved past the cutting event
    assert enforcement.report_accepted(7, has_feed=True) == []  # still before it
    assert supervisor.lost is not None
    assert enforcement.report_accepted(8, has_feed=True) == ["supervised runs are admitted again"]
    assert supervisor.lost is None


def test_a_cut_of_some_jtis_stops_them_only_and_refuses_nothing() -> None:
    enforcement, supervisor, feed, _clock, stops = _enforcement()
    enforcement.report_accepted(1, has_feed=True)
    feed.cursor = 1
    with process(HEEDS_TERM) as one, process(HEEDS_TERM) as two:
        supervisor.admit(run_of(one, "j1"))
        supervisor.admit(run_of(two, "j2"))
        enforcement.on_revoked(frozenset({"j1"}), "revoked jti j1: leaked")
        assert one.wait(timeout=30) < 0
        assert two.poll() is None and supervisor.lost is None
        assert supervisor.wait(timeout=30)
    # The record holds the code; the verifier's words are the message only.
    assert [(s.jti, s.reason, s.message) for s in stops] == [
        ("j1", "revoked", "revoked jti j1: leaked")]


def test_a_host_state_cut_is_recorded_under_its_state_code() -> None:
    enforcement, supervisor, _feed, _clock, _stops = _enforcement()
    enforcement.report_accepted(1, has_feed=True)
    enforcement.on_revoked(None, "host_untrusted: reference_value_mismatch")
    assert supervisor.lost == ("host_untrusted", "host_untrusted: reference_value_mismatch")
    enforcement.on_revoked(None, "host_stale")
    assert supervisor.lost == ("host_stale", "host_stale")
    enforcement.on_revoked(None, "host_stale_but_not\x1b: forged")
    assert supervisor.lost is not None and supervisor.lost[0] == "revoked"


def test_a_silent_feed_is_a_loss_while_reports_are_accepted() -> None:
    """Reports keep being accepted but the feed says nothing (cut off by the network or
    a proxy: a revocation would never arrive): past the allowed silence every supervised
    run stops (host_stale) and none is admitted until the feed speaks again."""
    enforcement, supervisor, feed, clock, stops = _enforcement(silence=45.0)
    enforcement.report_accepted(1, has_feed=True)  # the credential is there from now on
    with process(HEEDS_TERM) as child:
        supervisor.admit(run_of(child, "j1"))
        clock.now += 45
        assert enforcement.report_accepted(1, has_feed=True) == []  # at the bound: allowed
        assert child.poll() is None
        clock.now += 1
        lost = enforcement.report_accepted(1, has_feed=True)
        assert lost and lost[0].startswith("TRUST LOST: host_stale: the host's event feed")
        assert child.wait(timeout=30) < 0
        assert supervisor.wait(timeout=30)
    assert [s.reason for s in stops] == ["host_stale"]
    assert enforcement.report_accepted(1, has_feed=True) == []  # heard again, said once
    assert supervisor.lost is not None
    feed.last_contact = clock.now  # a heartbeat
    assert enforcement.report_accepted(1, has_feed=True) == ["supervised runs are admitted again"]


def test_the_report_loops_loss_is_not_undone_by_the_feed() -> None:
    """AgentTrust lost (a denied report): only an accepted report of a trusted host
    readmits, however healthy the feed; an accepted answer saying the host is untrusted
    is a loss, not a readmission."""
    enforcement, supervisor, feed, clock, _stops = _enforcement()
    slot = CredentialSlot()
    trust = ContinuousTrust(6.0, slot, enforcement)
    trusted = HostState("trusted", (), 3)
    watch = {"token": "t0", "expires_at": 100, "events": FEED, "after": 4}
    assert "*** " not in "".join(trust.accepted(trusted, watch))
    kept = slot()
    assert supervisor.lost is None and kept is not None and kept.token == "t0"  # noqa: S105
    feed.cursor, feed.last_contact = 4, clock.now
    trust.accepted(HostState("untrusted", ("reference_value_mismatch",), 3),
                   {**watch, "token": "t1", "expires_at": 101, "after": 5})
    assert supervisor.lost is not None and supervisor.lost[0] == "host_untrusted"
    said = trust.accepted(trusted, {**watch, "token": "t2", "expires_at": 102, "after": 6})
    assert "supervised runs are admitted again" in said and supervisor.lost is None
    # A malformed credential is refused (the kept one stays) and said; trust is the
    # signed result's, so the report still counts.
    said = trust.accepted(trusted, {"token": "bad token", "expires_at": 1, "events": FEED,
                                    "after": 7})
    assert any("watch credential is refused" in line for line in said)
    kept = slot()
    assert kept is not None and kept.token == "t2"  # noqa: S105


def test_a_stop_the_audit_log_cannot_take_still_stops(tmp_path: Path) -> None:
    """The host's audit log out of reach (its store cannot be opened): the CMD is stopped
    all the same, and the agent's stderr says the stop is NOT in the audit log."""
    said = io.StringIO()
    (tmp_path / "home").mkdir()
    log = StopLog(tmp_path / "home", store_url=f"sqlite:///{tmp_path}/absent/dir/x.db",
                  stream=said)
    supervisor = Supervisor(log)
    try:
        with process(HEEDS_TERM) as child:
            supervisor.admit(run_of(child, "j1"))
            assert supervisor.stop(None, "host_stale", "test") == 1
            assert child.wait(timeout=30) < 0
            assert supervisor.wait(timeout=30)
    finally:
        log.close()
    assert "NOT in the audit log" in said.getvalue(), said.getvalue()
    assert f"pid {child.pid}" in said.getvalue()


def test_a_silent_feed_stops_supervised_runs_also_while_reports_fail() -> None:
    """Attack: cut the feed and make every report fail (drop the traffic): the feed's
    silence is checked at the report loop's own checks, not only on an acceptance that
    never comes (before the fix the runs went on until the report silence ran out)."""
    enforcement, supervisor, feed, clock, stops = _enforcement(silence=45.0)
    enforcement.report_accepted(5, has_feed=True)
    feed.cursor, feed.last_contact = 5, clock.now
    trust = ContinuousTrust(3600.0, CredentialSlot(), enforcement)  # its own silence far off
    with process(HEEDS_TERM) as child:
        supervisor.admit(run_of(child, "j1"))
        clock.now += 30
        assert trust.failed("the verifier is unreachable") == []
        assert supervisor.lost is None and child.poll() is None
        clock.now += 16  # the feed silent for 46 s
        said = trust.failed("the verifier is unreachable")
        assert said and "event feed has said nothing for 46 s" in said[0], said
        assert child.wait(timeout=30) == -15
    assert supervisor.wait(timeout=30)
    assert [(s.jti, s.reason) for s in stops] == [("j1", "host_stale")]
    assert supervisor.lost is not None and "event feed" in supervisor.lost[1]
