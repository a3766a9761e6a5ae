"""Red team of continuous attestation on the verifier (issue 14): an attacker holding an
enrolled host (its TPM, its AK) tries to look trusted longer than its evidence allows, or
to move what is not its own. A real host on its own swtpm issues every report; the
verifier's clock is injected (tests/server/test_reports.py's ``continuous`` fixture)."""

from __future__ import annotations

from tests.server.serving import challenge_answer
from tests.server.test_admin import _token
from tests.server.test_reports import MAX_AGE, Continuous, _host, _report, _run

pytest_plugins = ["tests.server.test_reports"]


def test_a_report_precomputed_on_a_long_lived_challenge_does_not_stretch_trust(
        continuous: Continuous) -> None:
    """The attack: ask challenges with a long ttl (any client may, up to a week) while
    the host is clean, quote and sign a report on each at once, keep them, run what the
    policy does not know, and send one kept report per interval. Each is genuine, its
    challenge unused and unexpired: before the fix each one made the host trusted as of
    its sending, for as long as the hoard lasted. A challenge proves the quote was made
    after its issue, nothing later: that is all the freshness the report can claim."""
    nonce = challenge_answer(continuous.client, ttl=600)["nonce"]
    hoarded = continuous.rig.issue("agent", action="report", nonce=nonce,
                                   now=int(continuous.clock.now))
    continuous.clock.now += 5 * MAX_AGE  # the host has run anything it likes since
    sent = continuous.client.post("/v1/reports", json={"report": hoarded.decode()}).json()
    assert sent["accepted"] is True  # the evidence itself is genuine and its nonce unused
    assert sent["host_state"]["state"] == "stale", sent["host_state"]
    decision = _run(continuous)
    assert decision["accepted"] is False and decision["reasons"] == ["host_stale"], decision
    _, token = _token(continuous)
    seen = _host(continuous, token)
    assert seen["state"] == "stale"
    assert seen["last_report_at"] == int(continuous.clock.now) - 5 * MAX_AGE


def test_an_honest_report_on_a_fresh_challenge_still_makes_the_host_trusted(
        continuous: Continuous) -> None:
    """The fix's other side: a report on a challenge issued within the age counts, its
    freshness the challenge's issue time."""
    nonce = challenge_answer(continuous.client)["nonce"]
    made = continuous.rig.issue("agent", action="report", nonce=nonce,
                                now=int(continuous.clock.now))
    continuous.clock.now += MAX_AGE - 1
    sent = continuous.client.post("/v1/reports", json={"report": made.decode()}).json()
    assert sent["accepted"] is True and sent["host_state"]["state"] == "trusted"
    assert _run(continuous)["accepted"] is True
    continuous.clock.now += 2  # MAX_AGE + 1 after the challenge, 2 s after the report
    assert _run(continuous)["reasons"] == ["host_stale"]
    assert _report(continuous)["host_state"]["state"] == "trusted"
