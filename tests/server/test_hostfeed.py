"""Each host's own feed (attest.server.hostfeed): an accepted report's answer carries a
watch token that opens GET /v1/hosts/{host}/events for that host only, for a bounded time;
the feed shows the host's state changes and the revocations that cut its artifacts
(cascades from an ancestor included), resumable by cursor across instances, a restart and
two replicas on one PostgreSQL. A real host on its own swtpm issues every artifact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from attest.server import watchtoken
from attest.server.app import create_app
from attest.server.hostfeed import lifetime
from attest.store import default_url
from tests.server.serving import challenge, verify
from tests.server.test_admin import _auth, _token, _unauthorized
from tests.server.test_events import _events
from tests.server.test_reports import MAX_AGE, RULES, Clock, Continuous, _report
from tests.verify.rig import HOST_ID, Rig

FEED = f"/v1/hosts/{HOST_ID}/events"


@pytest.fixture
def continuous(rig: Rig) -> Iterator[Continuous]:
    """The service with freshness.report_max_age set, its clock a test's to move."""
    yield from _continuous(rig, default_url(_home(rig)))


def _home(rig: Rig) -> Any:
    home = rig.tmp / "verifier"
    home.mkdir(exist_ok=True)
    return home


def _continuous(rig: Rig, url: str) -> Iterator[Continuous]:
    from attest.policy import NonceMode
    home = _home(rig)
    clock = Clock(time.time())
    policy = rig.policy(nonce=NonceMode.REQUIRED, report_max_age=MAX_AGE, rules=RULES)
    with TestClient(create_app(policy, url, home, clock=clock)) as client:
        yield Continuous(client, rig, home, url, clock)


def _watch(svc: Continuous) -> dict[str, Any]:
    answer = _report(svc)
    assert answer["accepted"] is True, answer["denials"]
    watch: dict[str, Any] = answer["watch"]
    return watch


def _feed(client: TestClient, token: str, *, path: str = FEED, after: int | None = None,
          last_event_id: str | None = None) -> list[dict[str, Any]]:
    """The events a catch-up read (timeout=0) of a host's feed sends."""
    return _events(client, token, path=path, after=after, last_event_id=last_event_id)


def _revoke(client: TestClient, token: str, kind: str, subject: str) -> None:
    answer = client.post("/v1/revocations", headers=_auth(token),
                         json={"kind": kind, "subject": subject, "reason": f"test {kind}"})
    assert answer.status_code == 200, answer.text


def _run(svc: Continuous, **request: Any) -> dict[str, Any]:
    decision = verify(svc.client, svc.rig.issue(nonce=challenge(svc.client),
                                                now=int(svc.clock.now), **request))
    assert decision["accepted"] is True, decision["denials"]
    return decision


def test_an_accepted_report_carries_a_watch_token_for_its_own_feed(
        continuous: Continuous) -> None:
    watch = _watch(continuous)
    assert watch["events"] == FEED
    assert watch["expires_at"] == int(continuous.clock.now) + lifetime(MAX_AGE)
    (event,) = _feed(continuous.client, watch["token"])
    assert (event["kind"], event["subject"], event["data"]["state"]) == (
        "host_state", HOST_ID, "trusted")
    # A denied report carries none: the untrusted host keeps only the tokens it had.
    continuous.rig.host.ok("measure", "command", "--", "cat")  # not in the policy
    denied = _report(continuous)
    assert denied["accepted"] is False and "watch" not in denied
    states = [e["data"]["state"] for e in _feed(continuous.client, watch["token"])]
    assert states == ["trusted", "untrusted"]


def test_a_host_turned_stale_reads_so_on_its_feed(continuous: Continuous) -> None:
    watch = _watch(continuous)
    continuous.clock.now += MAX_AGE + 1  # no report since: stale, the token still good
    sweep = continuous.client.app.state.stale_sweep  # type: ignore[attr-defined]
    assert sweep.once() == [HOST_ID]
    states = [e["data"]["state"] for e in _feed(continuous.client, watch["token"])]
    assert states == ["trusted", "stale"]


def test_the_feed_shows_only_the_events_of_its_host(continuous: Continuous) -> None:
    watch = _watch(continuous)
    _, admin = _token(continuous)
    decision = _run(continuous)
    _revoke(continuous.client, admin, "host", "web-2")  # another host
    _revoke(continuous.client, admin, "jti", "never-seen")  # no host known
    _revoke(continuous.client, admin, "jti", decision["jti"])
    mine = _feed(continuous.client, watch["token"])
    assert [(e["kind"], e["subject"]) for e in mine] == [
        ("host_state", HOST_ID), ("revocation", f"jti:{decision['jti']}")]
    assert mine[1]["data"]["jtis"] == [decision["jti"]]
    every = continuous.client.get("/v1/events?timeout=0", headers=_auth(admin))
    assert "host:web-2" in every.text and "jti:never-seen" in every.text


def test_a_cascade_from_an_ancestor_reaches_the_childs_feed(continuous: Continuous) -> None:
    watch = _watch(continuous)
    _, admin = _token(continuous)
    raw = continuous.rig.issue(nonce=challenge(continuous.client),
                               now=int(continuous.clock.now))
    parent = verify(continuous.client, raw)
    assert parent["accepted"] is True, parent["denials"]
    child = _run(continuous, parent=raw)
    _revoke(continuous.client, admin, "jti", parent["jti"])
    cut = [e["data"] for e in _feed(continuous.client, watch["token"])
           if e["kind"] == "revocation"]
    assert [(d["jtis"], d["cascaded_from"]) for d in cut] == [
        ([parent["jti"]], None), ([child["jti"]], parent["jti"])]


def test_a_host_revocation_cuts_everything_of_the_host(continuous: Continuous) -> None:
    watch = _watch(continuous)
    _, admin = _token(continuous)
    _revoke(continuous.client, admin, "host", HOST_ID)
    cut = [e["data"] for e in _feed(continuous.client, watch["token"])
           if e["kind"] == "revocation"]
    # (The rig's AK is trusted by the policy, not enrolled: the host alone is revoked;
    # tests/store/test_eventhosts.py covers its EKs and AKs.)
    assert [(d["kind"], d["subject"], d["jtis"]) for d in cut] == [("host", HOST_ID, None)]


def test_only_a_watch_token_of_this_host_in_force_opens_the_feed(
        continuous: Continuous) -> None:
    watch = _watch(continuous)
    service = continuous.client.app.state.service  # type: ignore[attr-defined]
    other = service.watch.issue("web-2")["token"]
    _, admin = _token(continuous)
    client = continuous.client
    _unauthorized(client.get(f"{FEED}?timeout=0"))
    _unauthorized(client.get(f"{FEED}?timeout=0", headers={"authorization": watch["token"]}))
    for refused in (other, admin, watch["token"][:-2] + "AA", watch["token"] + "A",
                    "x" * 5000, "\u00e9".encode().decode("latin-1")):
        _unauthorized(client.get(f"{FEED}?timeout=0",
                                 headers={"authorization": f"Bearer {refused}".encode("latin-1")}))
    # The other host's token opens its own feed, not this one; none opens the admin API.
    assert client.get("/v1/hosts/web-2/events?timeout=0", headers=_auth(other)).status_code \
        == 200
    for path in ("/v1/events?timeout=0", f"/v1/hosts/{HOST_ID}", "/v1/revocations"):
        _unauthorized(client.get(path, headers=_auth(watch["token"])))
    # A token minted under another deployment's key, for this host: refused.
    forged = watchtoken.mint(b"\x00" * watchtoken.KEY_BYTES, HOST_ID,
                             watch["expires_at"])
    _unauthorized(client.get(f"{FEED}?timeout=0", headers=_auth(forged)))
    # Expired: the verifier's clock past expires_at.
    assert client.get(f"{FEED}?timeout=0", headers=_auth(watch["token"])).status_code == 200
    continuous.clock.now = watch["expires_at"]
    _unauthorized(client.get(f"{FEED}?timeout=0", headers=_auth(watch["token"])))


def test_the_feed_resumes_from_a_cursor_across_instances_and_a_restart(
        continuous: Continuous) -> None:
    watch = _watch(continuous)
    _, admin = _token(continuous)
    policy = continuous.client.app.state.service.policy  # type: ignore[attr-defined]
    jtis = [_run(continuous)["jti"] for _ in range(4)]
    with TestClient(create_app(policy, continuous.url, continuous.home,
                               clock=continuous.clock)) as other:
        # Two instances on one store revoking in turn; either one's feed, one order.
        for n, jti in enumerate(jtis[:2]):
            _revoke(continuous.client if n % 2 else other, admin, "jti", jti)
        seen = _feed(other, watch["token"])
        assert [e["data"].get("jtis") for e in seen[1:]] == [[j] for j in jtis[:2]]
        cursor = seen[-1]["id"]
    restarted = create_app(policy, continuous.url, continuous.home, clock=continuous.clock)
    with TestClient(restarted) as again:
        for jti in jtis[2:]:
            _revoke(again, admin, "jti", jti)
        resumed = _feed(again, watch["token"], after=0, last_event_id=str(cursor))
    assert [e["data"]["jtis"] for e in resumed] == [[j] for j in jtis[2:]]
    ids = [e["id"] for e in seen + resumed]
    assert ids == sorted(set(ids))


def test_two_replicas_on_one_postgresql_share_the_feed_and_its_tokens(
        rig: Rig, pg_url: str) -> None:
    first = _continuous(rig, pg_url)
    svc = next(first)
    try:
        watch = _watch(svc)
        _, admin = _token(svc)
        decision = _run(svc)
        replica = _continuous(rig, pg_url)
        other = next(replica)
        try:
            # The token one replica minted opens the feed on the other; a revocation
            # made on either is on both.
            _revoke(other.client, admin, "jti", decision["jti"])
            for client in (svc.client, other.client):
                seen = _feed(client, watch["token"])
                assert [e["kind"] for e in seen] == ["host_state", "revocation"]
                assert seen[1]["data"]["jtis"] == [decision["jti"]]
            second = _watch(other)["token"]
            assert [e["id"] for e in _feed(svc.client, second)] == [e["id"] for e in seen]
        finally:
            replica.close()
    finally:
        first.close()
