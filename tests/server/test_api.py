"""The HTTP API: challenge, verify, verify:batch; accept and deny both 200 with the
decision, logged; what is not a request answers a JSON error, never a traceback."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from attest.cli.main import cli
from attest.server.app import DEFAULT_NONCE_TTL, VERIFY_BODY_BYTES
from tests.server.conftest import Service
from tests.server.serving import challenge, verify


def _error(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == code, answer.text
    assert "Traceback" not in answer.text


def _audit(service: Service, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--home", str(service.home), "audit", *args,
                                      "--store", service.url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_a_challenged_artifact_is_accepted_and_its_replay_denied(service: Service) -> None:
    artifact = service.rig.issue(nonce=challenge(service.client))
    first = verify(service.client, artifact)
    assert first["accepted"] is True, first["denials"]
    assert first["reasons"] == [] and first["host"] == "web-1"
    assert first["audit_index"] == 0 and isinstance(first["jti"], str)
    again = verify(service.client, artifact)
    assert again["accepted"] is False
    assert "replayed" in again["reasons"] and again["audit_index"] == 1


def test_an_artifact_without_the_services_nonce_is_denied(service: Service) -> None:
    decision = verify(service.client, service.rig.issue())
    assert decision["accepted"] is False and decision["reasons"], decision


def test_the_jose_body_of_attest_run_is_verified(service: Service) -> None:
    artifact = service.rig.issue(nonce=challenge(service.client))
    answer = service.client.post("/v1/verify", content=artifact,
                                 headers={"content-type": "application/jose"})
    assert answer.status_code == 200 and answer.json()["accepted"] is True, answer.text


def test_a_string_that_is_no_artifact_is_a_logged_denial(service: Service) -> None:
    decision = verify(service.client, b"not.a.jws")
    assert decision["accepted"] is False and decision["reasons"] == ["malformed_artifact"]
    assert decision["audit_index"] == 0


def test_what_is_not_a_request_answers_a_json_error(service: Service) -> None:
    post = service.client.post
    _error(post("/v1/verify", content=b"{not json"), 400, "malformed_json")
    _error(post("/v1/verify", content=b"[1, 2]"), 400, "malformed_json")
    _error(post("/v1/verify", content=b'{"artifact": "a", "artifact": "b"}'), 400,
           "malformed_json")
    _error(post("/v1/verify", content=b"\xff\xfe"), 400, "malformed_json")
    _error(post("/v1/verify", content=b"[" * 10_000 + b"]" * 10_000), 400, "malformed_json")
    _error(post("/v1/verify", json={}), 422, "invalid_request")
    _error(post("/v1/verify", json={"artifact": 5}), 422, "invalid_request")
    _error(post("/v1/verify", json={"artifact": "a", "extra": 1}), 422, "invalid_request")
    _error(post("/v1/challenges", json={"ttl": "soon"}), 422, "invalid_request")
    _error(post("/v1/challenges", json={"ttl": 10**9}), 422, "invalid_request")
    # Within the document's bound but over the service's lifetime: the service's.
    asked = post("/v1/challenges", json={"ttl": 86_400}).json()
    shorter = post("/v1/challenges", json={"ttl": 5}).json()
    assert abs(asked["expires"] - shorter["expires"] - (DEFAULT_NONCE_TTL - 5)) <= 1  # a tick
    _error(post("/v1/verify:batch", json={"artifacts": []}), 422, "invalid_request")
    _error(post("/v1/verify:batch", json={"artifacts": ["a", 1]}), 422, "invalid_request")
    _error(service.client.get("/v1/verify"), 405, "method_not_allowed")
    _error(service.client.get("/v1/nothing"), 404, "not_found")
    # None of them reached the verifier: nothing was logged.
    assert _audit(service, "export").output.strip() == ""


def test_an_oversized_body_is_refused_before_it_is_read(service: Service) -> None:
    post = service.client.post
    huge = b"x" * (VERIFY_BODY_BYTES + 1)
    _error(post("/v1/verify", content=huge), 413, "body_too_large")

    def chunks() -> Any:  # no Content-Length: counted as it streams in
        for _ in range(3):
            yield b"x" * (VERIFY_BODY_BYTES // 2)

    _error(post("/v1/verify", content=chunks()), 413, "body_too_large")
    _error(post("/v1/challenges", content=b" " * 4096), 413, "body_too_large")
    _error(post("/v1/verify:batch", json={"artifacts": ["a"] * 5}), 413, "batch_too_large")


def test_a_batch_is_decided_in_order_with_replays_inside(service: Service) -> None:
    earlier = service.rig.issue(nonce=challenge(service.client))
    assert verify(service.client, earlier)["accepted"] is True
    first = service.rig.issue(nonce=challenge(service.client))
    second = service.rig.issue(nonce=challenge(service.client))
    answer = service.client.post("/v1/verify:batch", json={
        "artifacts": [first.decode(), earlier.decode(), second.decode(), first.decode()]})
    assert answer.status_code == 200, answer.text
    decisions = answer.json()["decisions"]
    assert [d["accepted"] for d in decisions] == [True, False, True, False], decisions
    # Replayed from before the batch: its nonce and jti are spent; from inside it: its nonce
    # is consumed by the member accepted earlier in the transaction (Verifier.verify_batch).
    assert decisions[1]["reasons"] == ["nonce_reused", "replayed"]
    assert decisions[3]["reasons"] == ["nonce_reused"]
    assert sorted(d["audit_index"] for d in decisions) == [1, 2, 3, 4]


def test_every_decision_is_in_the_audit_log(service: Service) -> None:
    artifact = service.rig.issue(nonce=challenge(service.client))
    decisions = [verify(service.client, artifact), verify(service.client, b"garbage")]
    batch = service.client.post("/v1/verify:batch", json={"artifacts": [artifact.decode()]})
    decisions += batch.json()["decisions"]
    entries = [json.loads(line) for line in _audit(service, "export").output.splitlines()
               if line.strip()]
    assert [e["decision"] for e in entries] == ["accepted", "denied", "denied"]
    assert [d["audit_index"] for d in decisions] == [0, 1, 2]
    _audit(service, "verify")


def test_health_and_the_openapi_document(service: Service) -> None:
    health = service.client.get("/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["policy"]["id"] == "verify-tests"
    document = service.client.get("/v1/openapi.json").json()
    assert {"/v1/health", "/v1/challenges", "/v1/verify", "/v1/verify:batch"} <= set(
        document["paths"])
    body = document["paths"]["/v1/verify"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["required"] == ["artifact"]


def test_a_store_out_of_reach_is_never_an_acceptance_and_challenges_need_none(
        service: Service) -> None:
    artifact = service.rig.issue(nonce=challenge(service.client))
    store = service.client.app.state.service.store  # type: ignore[attr-defined]
    store.close()  # its connections: the next transaction opens the file again
    database = service.home / "verifier.db"
    for stale in service.home.glob("verifier.db-*"):
        stale.unlink()
    database.write_bytes(b"not a database " * 512)
    # A challenge reads and writes no row (attest.store.challenges): still issued.
    assert isinstance(challenge(service.client), str)
    decision = verify(service.client, artifact)
    assert decision["accepted"] is False and decision["reasons"], decision
