"""Red team of continuous attestation on the verifier (issue 14): an attacker holding an
enrolled host (its TPM, its AK) tries to look trusted longer than its evidence allows, or
to move what is not its own. A real host on its own swtpm issues every report; the
verifier's clock is injected (tests/server/test_reports.py's ``continuous`` fixture)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from typing import Any

import pytest
from fastapi.testclient import TestClient

from attest.host.agent.watch import Credential
from attest.policy import NonceMode, TrustedAK
from attest.server import hostfeed
from attest.server.app import create_app
from attest.server.feedslots import MAX_STREAMS_PER_HOST, FeedSlots
from attest.store import default_url
from tests.server.serving import challenge, challenge_answer, policy_file, served, verify
from tests.server.test_admin import _token
from tests.server.test_reports import (
    MAX_AGE,
    RULES,
    Clock,
    Continuous,
    _host,
    _report,
    _run,
)
from tests.verify.rig import Rig

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


def test_a_hoarded_report_of_a_trusted_host_does_not_stretch_trust_either(
        continuous: Continuous) -> None:
    """The same attack on a host that is trusted already: its reports take the one
    transaction path (only the report time moves, with the acceptance); that path too
    counts the report from its challenge's issue, not from its arrival."""
    nonce = challenge_answer(continuous.client, ttl=600)["nonce"]  # kept for later
    continuous.clock.now += 5 * MAX_AGE
    assert _report(continuous)["host_state"]["state"] == "trusted"  # honest, fresh
    # Quoted after the honest report (a later TPM clock: it is not an old quote), on
    # the challenge kept since long before it.
    hoarded = continuous.rig.issue("agent", action="report", nonce=nonce,
                                   now=int(continuous.clock.now))
    continuous.clock.now += MAX_AGE + 1  # the honest report's age runs out...
    sent = continuous.client.post("/v1/reports", json={"report": hoarded.decode()}).json()
    assert sent["accepted"] is True and sent["host_state"]["changed"] is False
    # ...and the hoarded one, though sent now, is as old as its challenge.
    assert sent["host_state"]["state"] == "stale", sent["host_state"]
    assert "watch" not in sent
    assert _run(continuous)["reasons"] == ["host_stale"]


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


@pytest.mark.parametrize("host", ["web/1", "wéb-1", "é" * 200, "web/../db"])
def test_every_host_id_a_policy_accepts_can_read_its_own_feed(rig: Rig, host: str) -> None:
    """The attack on the watcher: a host whose id the policy accepts (no whitespace or
    control characters, up to 255 characters) but the feed's route did not: with a '/'
    (404), a character beyond ASCII (422) or more than 255 bytes of UTF-8 (the report's
    answer failed, 500, after its state was stored). Its agent's watcher never read a
    revocation: a supervised run of it went on after its artifact was revoked. Now the
    report is answered with its credential, and the credential opens that host's feed,
    and that feed only."""
    home = rig.tmp / "verifier"
    home.mkdir()
    identity = rig.identity
    policy = rig.policy(nonce=NonceMode.REQUIRED, report_max_age=MAX_AGE, rules=RULES,
                        trusted_aks=[TrustedAK(host, identity.ak_public,
                                               identity.ak_qualified_name or None)])
    app = create_app(policy, default_url(home), home, clock=Clock(time.time()))
    with TestClient(app) as client:
        raw = rig.issue("agent", action="report", nonce=challenge(client))
        answer = client.post("/v1/reports", json={"report": raw.decode()})
        assert answer.status_code == 200, answer.text
        watch = answer.json()["watch"]
        assert Credential.from_answer(watch).events == watch["events"]  # the agent's check
        bearer = {"Authorization": f"Bearer {watch['token']}"}
        feed = client.get(f"{watch['events']}?timeout=0", headers=bearer)
        assert feed.status_code == 200, feed.text
        assert f'"host":{json.dumps(host)}' not in feed.text  # data names no host
        assert '"state":"trusted"' in feed.text
        # Another host's feed, a neighbour by path, is not opened by it.
        for other in ("web", "web-1", f"{host}/x", "x/" + host):
            path = hostfeed.feed_path(other)
            assert client.get(f"{path}?timeout=0", headers=bearer).status_code == 401


def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        found: dict[str, Any] = json.loads(answer.read())
    return found


def _open_feed(base: str, watch: dict[str, Any]) -> http.client.HTTPConnection:
    """A stream of the host's feed, opened (its status read), or the refusal's."""
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", watch["events"], headers={"Authorization": f"Bearer {watch['token']}"})
    return conn


def test_one_watch_token_holds_a_bounded_number_of_streams(rig: Rig) -> None:
    """The attack: the holder of a watch token (the host itself) opens stream after
    stream of its feed, each one polling the store every second for five minutes.
    Before the fix there was no bound; now a host holds FeedSlots' limit at most, the
    next is 429 with Retry-After, and a stream that ends gives its slot back."""
    policy = policy_file(rig, nonce=NonceMode.REQUIRED, report_max_age=MAX_AGE, rules=RULES)
    with served(policy, rig.tmp / "verifier") as base:
        nonce = _post(base, "/v1/challenges", {})["nonce"]
        raw = rig.issue("agent", action="report", nonce=nonce)
        watch = _post(base, "/v1/reports", {"report": raw.decode()})["watch"]
        opened: list[http.client.HTTPConnection] = []
        try:
            for _ in range(MAX_STREAMS_PER_HOST):
                conn = _open_feed(base, watch)
                opened.append(conn)
                assert conn.getresponse().status == 200
            refused = _open_feed(base, watch)
            opened.append(refused)
            answer = refused.getresponse()
            assert answer.status == 429 and answer.getheader("Retry-After")
            assert json.loads(answer.read())["error"]["code"] == "rate_limited"
            opened[0].close()  # one ends: the service sees it at its next poll
            deadline = time.monotonic() + 30
            while True:
                again = _open_feed(base, watch)
                opened.append(again)
                status = again.getresponse().status
                if status == 200:
                    break
                assert status == 429 and time.monotonic() < deadline, status
                time.sleep(0.2)
        finally:
            for conn in opened:
                conn.close()


def test_a_feed_slot_is_given_back_at_its_streams_deadline_whatever_happened() -> None:
    """A stream the server never ran to its end (its body never iterated) does not hold
    its slot for ever: the host's own watcher is shut out one stream's life at most."""
    now = [0.0]
    slots = FeedSlots(2, clock=lambda: now[0])
    first, second = slots.take("web-1", 300), slots.take("web-1", 10)
    assert first is not None and second is not None
    assert slots.take("web-1", 300) is None and slots.take("web-2", 300) is not None
    now[0] += 60  # the 10 s stream's deadline (and slack) passed, never given back
    assert slots.take("web-1", 300) is not None and slots.held("web-1") == 2
    slots.give("web-1", first)
    assert slots.held("web-1") == 1


def test_a_report_sent_as_an_artifact_to_verify_is_gated(continuous: Continuous) -> None:
    """The attack: a host that is stale (or untrusted) issues an artifact for action
    `report` (whose rule usually allows any argv: here `deploy prod`) and sends it to
    POST /v1/verify instead of /v1/reports. Before the fix the host gate let every
    report through, wherever it was verified: accepted, with a signed affirming result
    naming that argv. Only /v1/reports lets a report past the gate now (it is how a host
    gets back to trusted); anywhere else it is denied as any artifact of the host."""
    raw = continuous.rig.issue("deploy", "prod", action="report",
                               nonce=challenge(continuous.client),
                               now=int(continuous.clock.now))
    decision = verify(continuous.client, raw)
    assert decision["accepted"] is False and decision["reasons"] == ["host_stale"], decision
    assert _report(continuous)["host_state"]["state"] == "trusted"  # the route still works
    assert verify(continuous.client, continuous.rig.issue(
        "deploy", "prod", action="report", nonce=challenge(continuous.client),
        now=int(continuous.clock.now)))["accepted"] is True  # trusted: nothing to gate
