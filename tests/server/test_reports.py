"""Continuous attestation on the verifier (attest.server.reports): reports pushed to
POST /v1/reports move the host's trust state; an untrusted or stale host's artifacts are
denied; every change is an audit entry; GET /v1/hosts/{host} says the state and why.
A real host on its own swtpm issues every report; the verifier's clock is injected."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from attest.policy import NonceMode, Rule
from attest.server.app import create_app
from attest.store import default_url
from tests.server.conftest import Service
from tests.server.serving import challenge, verify
from tests.server.test_admin import _auth, _token
from tests.server.test_events import _events
from tests.verify.rig import HOST_ID, Rig

MAX_AGE = 10
RULES = (Rule(("*",), ("exec",), ("*",), ("*",)), Rule(("*",), ("report",), ("*",), ("*",)))


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Continuous(Service):
    clock: Clock


@pytest.fixture
def continuous(rig: Rig) -> Iterator[Continuous]:
    """The service with freshness.report_max_age set, its clock a test's to move."""
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    clock = Clock(time.time())
    policy = rig.policy(nonce=NonceMode.REQUIRED, report_max_age=MAX_AGE, rules=RULES)
    app = create_app(policy, url, home, clock=clock)
    with TestClient(app) as client:
        yield Continuous(client, rig, home, url, clock)


def _report(svc: Continuous, *, nonce: str | None = None) -> dict[str, Any]:
    raw = svc.rig.issue("agent", action="report",
                        nonce=challenge(svc.client) if nonce is None else nonce,
                        now=int(svc.clock.now))
    answer = svc.client.post("/v1/reports", json={"report": raw.decode()})
    assert answer.status_code == 200, answer.text
    decided: dict[str, Any] = answer.json()
    return decided


def _run(svc: Continuous) -> dict[str, Any]:
    return verify(svc.client, svc.rig.issue(nonce=challenge(svc.client),
                                            now=int(svc.clock.now)))


def _host(svc: Continuous, token: str) -> dict[str, Any]:
    answer = svc.client.get(f"/v1/hosts/{HOST_ID}", headers=_auth(token))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _state_entries(svc: Continuous, token: str) -> list[dict[str, Any]]:
    page = svc.client.get("/v1/audit/entries?limit=500", headers=_auth(token))
    assert page.status_code == 200, page.text
    data = [json.loads(e["data"]) for e in page.json()["entries"]]
    return [d for d in data if d["kind"] == "host_state"]


def test_a_host_that_never_reported_is_stale_and_its_artifact_denied(
        continuous: Continuous) -> None:
    decision = _run(continuous)
    assert decision["accepted"] is False and decision["reasons"] == ["host_stale"], decision
    _, token = _token(continuous)
    assert _host(continuous, token)["state"] == "stale"


def test_a_report_makes_the_host_trusted_and_its_artifacts_run(
        continuous: Continuous) -> None:
    report = _report(continuous)
    assert report["accepted"] is True, report["denials"]
    assert report["host_state"]["state"] == "trusted" and report["host_state"]["changed"]
    decision = _run(continuous)
    assert decision["accepted"] is True, decision["denials"]
    # A second report changes nothing: no second audit entry.
    assert _report(continuous)["host_state"]["changed"] is False
    _, token = _token(continuous)
    entries = _state_entries(continuous, token)
    assert [(e["decision"], e["host"]) for e in entries] == [("trusted", HOST_ID)]


def test_an_unexpected_measurement_makes_the_host_untrusted_and_its_artifacts_denied(
        continuous: Continuous) -> None:
    assert _report(continuous)["accepted"] is True
    continuous.rig.host.ok("measure", "command", "--", "cat")  # not in the policy
    report = _report(continuous)
    assert report["accepted"] is False and report["reasons"] == ["reference_value_mismatch"]
    assert report["host_state"]["state"] == "untrusted"
    assert report["host_state"]["reasons"] == ["reference_value_mismatch"]
    decision = _run(continuous)
    assert decision["accepted"] is False and "host_untrusted" in decision["reasons"]
    _, token = _token(continuous)
    seen = _host(continuous, token)
    assert seen["state"] == "untrusted" and seen["reasons"] == ["reference_value_mismatch"]
    assert seen["denial"]["reason"] == "host_untrusted"
    # Untrusted stays untrusted, however recent its last good report.
    assert "host_untrusted" in _run(continuous)["reasons"]
    entries = _state_entries(continuous, token)
    assert [e["decision"] for e in entries] == ["trusted", "untrusted"]
    assert entries[1]["reasons"] == ["reference_value_mismatch"]
    assert seen["audit_index"] == max(e["index"] for e in entries)
    streamed = [e["data"] for e in _events(continuous.client, token)]
    assert streamed[-1] == {"state": "untrusted", "reasons": ["reference_value_mismatch"],
                            "audit_index": seen["audit_index"]}


def test_no_report_within_the_age_makes_the_host_stale(continuous: Continuous) -> None:
    assert _report(continuous)["accepted"] is True
    continuous.clock.now += MAX_AGE  # exactly the age: still fresh
    assert _run(continuous)["accepted"] is True
    continuous.clock.now += 1
    decision = _run(continuous)
    assert decision["accepted"] is False and decision["reasons"] == ["host_stale"]
    _, token = _token(continuous)
    assert _host(continuous, token)["state"] == "stale"
    # The sweep (each replica's thread; run here at once) stores and logs the change.
    continuous.client.app.state.stale_sweep.once()  # type: ignore[attr-defined]
    # Reporting again is how it gets back.
    assert _report(continuous)["accepted"] is True
    assert _run(continuous)["accepted"] is True
    entries = _state_entries(continuous, token)
    assert [e["decision"] for e in entries] == ["trusted", "stale", "trusted"]
    # Each change is also an event on the stream, naming its audit entry.
    changes = [(e["kind"], e["subject"], e["data"]["state"], e["data"]["audit_index"])
               for e in _events(continuous.client, token)]
    assert changes == [("host_state", HOST_ID, e["decision"], e["index"]) for e in entries]


def test_a_forged_or_replayed_report_moves_no_state(continuous: Continuous) -> None:
    """The attacker with the host user's rights but not the AK: a report naming the host
    but not signed by its key, or a genuine one replayed, must not make it untrusted
    (anyone could then stop any host) nor trusted (a replay proves nothing now)."""
    from tests.verify.rig import join, split

    nonce = challenge(continuous.client)
    raw = continuous.rig.issue("agent", action="report", nonce=nonce,
                               now=int(continuous.clock.now))
    first = continuous.client.post("/v1/reports", json={"report": raw.decode()}).json()
    assert first["accepted"] is True
    continuous.rig.host.ok("measure", "command", "--", "cat")
    again = continuous.client.post("/v1/reports", json={"report": raw.decode()}).json()
    assert again["accepted"] is False and "host_state" not in again, again
    header, payload, signature = raw.split(b".")
    forged = join(header, payload, bytes(reversed(signature)))
    del split
    bad = continuous.client.post("/v1/reports", json={"report": forged.decode()}).json()
    assert bad["accepted"] is False and "host_state" not in bad, bad
    _, token = _token(continuous)
    assert _host(continuous, token)["state"] == "trusted"


def test_what_is_not_a_report_is_refused(continuous: Continuous) -> None:
    post = continuous.client.post
    exec_artifact = continuous.rig.issue(nonce=challenge(continuous.client),
                                         now=int(continuous.clock.now))
    answer = post("/v1/reports", json={"report": exec_artifact.decode()})
    assert answer.status_code == 422 and "report" in answer.json()["error"]["message"]
    unchallenged = continuous.rig.issue("agent", action="report",
                                        now=int(continuous.clock.now))
    answer = post("/v1/reports", json={"report": unchallenged.decode()})
    assert answer.status_code == 422 and "eat_nonce" in answer.json()["error"]["message"]
    assert post("/v1/reports", json={"report": 5}).status_code == 422
    assert post("/v1/reports", content=b"{not json").status_code == 400
    garbage = post("/v1/reports", json={"report": "not.a.jws"})
    assert garbage.status_code == 200 and garbage.json()["accepted"] is False
    assert continuous.client.get(f"/v1/hosts/{HOST_ID}").status_code == 401


def test_an_untrusted_host_stays_denied_until_a_report_is_accepted(
        continuous: Continuous) -> None:
    """The policy learns the new measurement (a restart with it): the artifact now
    appraises, yet the host stays untrusted, so it is denied for that alone, until the
    host's next report is accepted. The whole story is in a log that verifies."""
    assert _report(continuous)["accepted"] is True
    continuous.rig.host.ok("measure", "command", "--", "cat")
    assert _report(continuous)["host_state"]["state"] == "untrusted"
    continuous.client.__exit__(None, None, None)
    rig = continuous.rig
    fixed = rig.policy(nonce=NonceMode.REQUIRED, report_max_age=MAX_AGE, rules=RULES)
    app = create_app(fixed, continuous.url, continuous.home, clock=continuous.clock)
    with TestClient(app) as client:
        svc = Continuous(client, rig, continuous.home, continuous.url, continuous.clock)
        decision = _run(svc)
        assert decision["accepted"] is False and decision["reasons"] == ["host_untrusted"]
        batch = client.post("/v1/verify:batch", json={"artifacts": [rig.issue(
            nonce=challenge(client), now=int(svc.clock.now)).decode()]}).json()
        assert batch["decisions"][0]["reasons"] == ["host_untrusted"]
        report = _report(svc)
        assert report["accepted"] is True and report["host_state"]["state"] == "trusted"
        assert _run(svc)["accepted"] is True
        _, token = _token(svc)
        assert [e["decision"] for e in _state_entries(svc, token)] == [
            "trusted", "untrusted", "trusted"]
    from click.testing import CliRunner

    from attest.cli.main import cli
    checked = CliRunner().invoke(cli, ["--home", str(continuous.home), "audit", "verify",
                                       "--store", continuous.url], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output


def test_a_stale_host_is_denied_in_a_batch_too(continuous: Continuous) -> None:
    raws = [continuous.rig.issue(nonce=challenge(continuous.client),
                                 now=int(continuous.clock.now)).decode() for _ in range(2)]
    batch = continuous.client.post("/v1/verify:batch", json={"artifacts": raws})
    assert batch.status_code == 200, batch.text
    assert [d["reasons"] for d in batch.json()["decisions"]] == [["host_stale"]] * 2


def test_a_good_report_held_back_does_not_undo_untrusted(continuous: Continuous) -> None:
    """The attacker with the host user's rights and the TPM: a report made while the host
    was clean, kept and sent after the measurement made the host untrusted. Its
    challenge is still valid and its quote genuine, but it was quoted earlier."""
    assert _report(continuous)["accepted"] is True
    held = continuous.rig.issue("agent", action="report", nonce=challenge(continuous.client),
                                now=int(continuous.clock.now))
    continuous.rig.host.ok("measure", "command", "--", "cat")
    assert _report(continuous)["host_state"]["state"] == "untrusted"
    late = continuous.client.post("/v1/reports", json={"report": held.decode()}).json()
    assert late["accepted"] is True  # the verifier's decision on the evidence itself
    assert late["host_state"]["state"] == "untrusted" and late["host_state"]["changed"] is False
    assert "host_untrusted" in _run(continuous)["reasons"]


def test_a_good_report_held_back_gets_no_watch_credential(continuous: Continuous) -> None:
    """The same held-back report, accepted on its evidence while the host stays untrusted:
    no watch credential (an untrusted host's feed credential is not extended)."""
    assert "watch" in _report(continuous)
    held = continuous.rig.issue("agent", action="report", nonce=challenge(continuous.client),
                                now=int(continuous.clock.now))
    continuous.rig.host.ok("measure", "command", "--", "cat")
    assert "watch" not in _report(continuous)  # denied: none
    late = continuous.client.post("/v1/reports", json={"report": held.decode()}).json()
    assert late["accepted"] is True and late["host_state"]["state"] == "untrusted"
    assert "watch" not in late, late["watch"]


def test_a_gate_that_cannot_read_the_state_denies(continuous: Continuous) -> None:
    """Fail closed: the trust state out of reach (its table gone) is a denial, never an
    acceptance of an artifact whose host's state is unknown."""
    assert _report(continuous)["accepted"] is True
    store = continuous.client.app.state.service.store  # type: ignore[attr-defined]
    with store.write() as tx:
        tx.execute("DROP TABLE host_trust")
    decision = _run(continuous)
    assert decision["accepted"] is False and decision["reasons"], decision
    assert decision["reasons"] == ["audit_unavailable"], decision  # the store failed


def test_reports_send_only_the_records_since_the_last_accepted_one(
        continuous: Continuous) -> None:
    """The agent's loop: each report carries the runtime log from the prefix the last
    accepted one acknowledged (its facts' runtime_log); a new unexpected record in that
    suffix is what turns the host untrusted."""
    from attest.artifact import jws
    from attest.artifact.model import RuntimeLogBase

    first = _report(continuous)
    assert first["accepted"] is True
    base = RuntimeLogBase.from_json(first["facts"]["runtime_log"])

    def report_from(base: RuntimeLogBase) -> dict[str, Any]:
        raw = continuous.rig.issue("agent", action="report", log_base=base,
                                   nonce=challenge(continuous.client),
                                   now=int(continuous.clock.now))
        assert jws.parse(raw).claims.evidence.runtime_log_base == base
        answer = continuous.client.post("/v1/reports", json={"report": raw.decode()})
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    second = report_from(base)
    assert second["accepted"] is True, second["denials"]
    continuous.rig.host.ok("measure", "command", "--", "cat")
    third = report_from(RuntimeLogBase.from_json(second["facts"]["runtime_log"]))
    assert third["reasons"] == ["reference_value_mismatch"]
    assert third["host_state"]["state"] == "untrusted"


def test_any_verifier_under_the_policy_gates_not_only_the_service(rig: Rig) -> None:
    """`attest verify` on the service's store with the same policy: the gate is the
    Verifier's, so a stale host's artifact is denied there too."""
    policy = rig.policy(report_max_age=MAX_AGE, rules=RULES)
    decision = rig.verifier(policy).verify(rig.issue())
    assert not decision.accepted and decision.reasons == ("host_stale",), decision
    # A report passes the gate only through POST /v1/reports (tests/server/
    # test_redteam_continuous.py): here it is an artifact of a stale host like any other.
    report = rig.verifier(policy).verify(rig.issue("agent", action="report"))
    assert not report.accepted and report.reasons == ("host_stale",), report


def test_without_report_max_age_reports_are_recorded_and_nothing_is_gated(rig: Rig) -> None:
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    clock = Clock(time.time())
    app = create_app(rig.policy(nonce=NonceMode.REQUIRED, rules=RULES), url, home, clock=clock)
    with TestClient(app) as client:
        svc = Continuous(client, rig, home, url, clock)
        assert _run(svc)["accepted"] is True  # no report ever: not gated
        assert _report(svc)["host_state"]["state"] == "trusted"
        clock.now += 10_000
        _, token = _token(svc)
        seen = _host(svc, token)
        assert seen["state"] == "trusted" and seen["report_max_age"] is None


def test_a_state_that_cannot_be_written_is_a_json_503_never_a_traceback(
        continuous: Continuous) -> None:
    store = continuous.client.app.state.service.store  # type: ignore[attr-defined]
    with store.write() as tx:
        tx.execute("DROP TABLE host_trust")
    raw = continuous.rig.issue("agent", action="report", nonce=challenge(continuous.client),
                               now=int(continuous.clock.now))
    answer = continuous.client.post("/v1/reports", json={"report": raw.decode()})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] and "Traceback" not in answer.text
