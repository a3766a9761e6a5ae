"""Operations: liveness and readiness, Prometheus metrics, the audit log's public proofs
checked OFFLINE with attest's proof checkers and the log's key, the per-host rate limit
and the request limits (JSON depth)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from attest.audit.note import VerifierKey
from attest.audit.proofs import ConsistencyProof, InclusionProof
from attest.cli.main import cli
from attest.errors import ProofError
from attest.policy import NonceMode
from attest.server.app import create_app
from attest.server.limits import RateLimiter, artifact_key
from attest.server.operate import OpsConfig
from tests.server.conftest import Service
from tests.server.serving import challenge, verify


def _key(service: Service) -> VerifierKey:
    """The log's verifier key as an auditor gets it: `attest audit key`, out of band."""
    result = CliRunner().invoke(cli, ["--home", str(service.home), "audit", "key"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return VerifierKey.parse(result.output.strip())


def _metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def test_healthz_and_readyz_answer(service: Service) -> None:
    assert service.client.get("/healthz").json() == {"status": "ok"}
    assert service.client.get("/readyz").json() == {"status": "ready"}


def test_readyz_is_503_when_the_store_is_gone_and_healthz_still_200(service: Service) -> None:
    store = service.client.app.state.service.store  # type: ignore[attr-defined]
    store.close()
    for stale in service.home.glob("verifier.db-*"):
        stale.unlink()
    # A new file put in its place (not the old one overwritten): a connection the
    # service's threads (heartbeat, nonce purge) still hold would checkpoint its WAL
    # into the old file on closing, restoring its first page. Closed again after, so
    # that no connection opened before the swap serves the probe.
    garbage = service.home / "garbage.db"
    garbage.write_bytes(b"not a database " * 512)
    os.replace(garbage, service.home / "verifier.db")
    store.close()
    ready = service.client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["error"]["code"] == "store_unavailable"
    assert "Traceback" not in ready.text
    assert service.client.get("/healthz").status_code == 200
    counted = _metrics(service.client)
    assert counted[("attest_store_errors_total", ())] >= 1


def test_metrics_count_decisions_by_result_and_reason(service: Service) -> None:
    artifact = service.rig.issue(nonce=challenge(service.client))
    assert verify(service.client, artifact)["accepted"]
    assert not verify(service.client, artifact)["accepted"]  # replayed
    batch = service.client.post("/v1/verify:batch", json={"artifacts": ["a.b.c", "x"]})
    assert batch.status_code == 200
    counted = _metrics(service.client)
    assert counted[("attest_decisions_total", (("result", "accepted"),))] == 1
    assert counted[("attest_decisions_total", (("result", "denied"),))] == 3
    assert counted[("attest_denial_reasons_total", (("reason", "replayed"),))] == 1
    assert counted[("attest_denial_reasons_total", (("reason", "malformed_artifact"),))] == 2
    assert counted[("attest_request_seconds_count", (("route", "/v1/verify"),))] == 2
    assert counted[("attest_request_seconds_count", (("route", "/v1/verify:batch"),))] == 1
    assert counted[("attest_enrollments_total", (("result", "accepted"),))] == 0
    # A path the app doesn't have adds no series of its own.
    service.client.get("/v1/no-such-thing-1")
    service.client.get("/v1/no-such-thing-2")
    routes = {dict(labels).get("route") for (name, labels) in _metrics(service.client)
              if name == "attest_request_seconds_count"}
    assert "other" in routes and not any("no-such" in str(r) for r in routes)


def test_audit_proofs_fetched_over_http_verify_offline(service: Service) -> None:
    key = _key(service)
    client = service.client
    first = verify(client, service.rig.issue(nonce=challenge(client)))
    receipt = client.get(f"/v1/audit/proof/inclusion?index={first['audit_index']}")
    assert receipt.status_code == 200, receipt.text
    old = InclusionProof.from_json(receipt.json())
    assert old.entry is None  # public: the entry's data (hosts, subjects) is left out
    old_head = old.verify(key)
    for _ in range(3):
        verify(client, b"garbage")
    last = verify(client, service.rig.issue(nonce=challenge(client)))
    proof = InclusionProof.from_json(
        client.get(f"/v1/audit/proof/inclusion?index={last['audit_index']}").json())
    new_head = proof.verify(key)
    assert new_head.size > old_head.size
    head = client.get("/v1/audit/head").json()
    assert head["size"] == new_head.size and key.open(head["checkpoint"]) == new_head
    consistency = client.get(f"/v1/audit/proof/consistency?old={old_head.size}"
                             f"&new={new_head.size}")
    assert consistency.status_code == 200, consistency.text
    assert ConsistencyProof.from_json(consistency.json()).verify(key) == (old_head, new_head)
    # And as an auditor does, with the CLI and nothing but the key.
    saved = service.rig.tmp / "receipt.json"
    saved.write_text(receipt.text)
    checked = CliRunner().invoke(cli, ["audit", "check-proof", str(saved), "--key",
                                       key.encode()], catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    # A proof bent on the way does not verify.
    bent = dict(receipt.json())
    bent["index"] = bent["index"] + 1
    with pytest.raises(ProofError):
        InclusionProof.from_json(bent).verify(key)


def test_audit_proofs_refuse_what_the_log_does_not_hold(service: Service) -> None:
    client = service.client
    assert client.get("/v1/audit/head").status_code == 404
    verify(client, b"garbage")
    for query in ("inclusion?index=5", "inclusion?index=0&size=9", "consistency?old=3",
                  "consistency?old=1&new=2"):
        answer = client.get(f"/v1/audit/proof/{query}")
        assert answer.status_code == 404, (query, answer.text)
        assert answer.json()["error"]["code"] == "not_found"
    for query in ("inclusion?index=-1", "inclusion", f"inclusion?index={2**80}",
                  "inclusion?index=x", "consistency?old=0"):
        answer = client.get(f"/v1/audit/proof/{query}")
        assert answer.status_code == 422, (query, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request"


def test_request_bodies_nested_too_deep_are_refused(service: Service) -> None:
    post = service.client.post
    nested = b'{"artifact": ' + b"[" * 5 + b"]" * 5 + b"}"  # 6 deep: past the body's 4
    for path in ("/v1/verify", "/v1/verify:batch", "/v1/challenges"):
        answer = post(path, content=nested)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["code"] == "malformed_json"
    shallow = post("/v1/verify", content=b'{"artifact": [[1]]}')
    assert shallow.status_code == 422 and shallow.json()["error"]["code"] == "invalid_request"


@pytest.fixture
def limited(service: Service) -> Iterator[TestClient]:
    """The service again on the same store, limited to a burst of 3 per host."""
    app = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url, service.home,
                     operations=OpsConfig(rate=0.001, burst=3))
    with TestClient(app) as client:
        yield client


def test_a_host_past_its_burst_is_answered_429_with_retry_after(
        service: Service, limited: TestClient) -> None:
    artifact = service.rig.issue(nonce=challenge(service.client))
    for _ in range(3):
        verify(limited, artifact)
    refused = limited.post("/v1/verify", json={"artifact": artifact.decode()})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    jose = limited.post("/v1/verify", content=artifact,
                        headers={"content-type": "application/jose"})
    assert jose.status_code == 429  # the same key, in the other body
    # Another host's key has its own bucket; health and metrics are never limited.
    other = fake_artifact(kid="ab" * 34)
    assert limited.post("/v1/verify", json={"artifact": other}).status_code == 200
    for _ in range(5):
        assert limited.get("/healthz").status_code == 200
    counted = _metrics(limited)
    assert counted[("attest_rate_limited_total", ())] == 2
    # The refused requests were never decided: 3 + 1 decisions (the first accepted, two
    # replays and the other host's forgery denied).
    assert counted[("attest_decisions_total", (("result", "accepted"),))] == 1
    assert counted[("attest_decisions_total", (("result", "denied"),))] == 3


def test_requests_without_an_artifact_are_limited_by_address(
        service: Service, limited: TestClient) -> None:
    answers = [limited.post("/v1/challenges", json={}).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]


def test_the_buckets_are_bounded_and_refill() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, burst=1, max_keys=8, clock=lambda: now[0])
    for n in range(1000):
        assert limiter.take(f"kid:{n:04x}") == 0
    assert len(limiter) == 8
    assert limiter.take("kid:03e7") == pytest.approx(0.5)  # recent: still empty
    assert limiter.take("kid:0000") == 0  # evicted long ago: a full bucket again
    now[0] += 0.5
    assert limiter.take("kid:03e7") == 0


def test_the_limit_key_is_the_headers_kid_or_nothing() -> None:
    kid = "000b" + "cd" * 32
    assert artifact_key(b'{"artifact": "' + fake_artifact(kid).encode() + b'"}') == f"kid:{kid}"
    assert artifact_key(fake_artifact(kid).encode()) == f"kid:{kid}"
    for prefix in (b"", b"{}", b'{"artifact": 5}', b"not base64!.x.y",
                   fake_artifact("NOT HEX").encode(), fake_artifact("a" * 600).encode(),
                   b"W10.x.y"):
        assert artifact_key(prefix) is None, prefix


def test_the_workers_get_the_limits_through_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = OpsConfig(rate=2.5, burst=7)
    for name, value in config.environment().items():
        monkeypatch.setenv(name, value)
    assert OpsConfig.from_environment() == OpsConfig(rate=2.5, burst=7)
    for name, value in OpsConfig().environment().items():
        monkeypatch.setenv(name, value)
    assert OpsConfig.from_environment().rate is None


def fake_artifact(kid: str) -> str:
    """A JWS-shaped text whose header names ``kid`` (its signature is nobody's)."""
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "ES256", "typ": "attest-artifact+jws", "kid": kid}).encode())
    return header.rstrip(b"=").decode() + ".e30.c2ln"
