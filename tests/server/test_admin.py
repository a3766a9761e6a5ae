"""The admin API: bearer tokens (`attest admin token`), revocations, the hosts view and
the audit entries, on a real store with a host on its own swtpm. Every refusal is tried:
no token, another scheme, a token of the right shape with a wrong secret, a revoked one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from attest.cli.main import cli
from attest.policy import NonceMode
from attest.server.app import create_app
from attest.store import Store
from tests.server.conftest import Service
from tests.server.serving import challenge, verify


def _cli(service: Service, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--home", str(service.home), *args],
                                catch_exceptions=False)
    return result


def _token(service: Service, name: str = "ops") -> tuple[str, str]:
    """A new token (its id and its text), made by `attest admin token create`."""
    result = _cli(service, "admin", "token", "create", "--name", name, "--store",
                  service.url, "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    return made["id"], made["token"]


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _unauthorized(answer: Any) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "unauthorized"


ADMIN_GETS = ("/v1/revocations", "/v1/hosts", "/v1/audit/entries")


def test_admin_endpoints_refuse_anyone_without_a_token_in_force(service: Service) -> None:
    token_id, token = _token(service)
    get, post = service.client.get, service.client.post
    body = {"kind": "host", "subject": "web-1", "reason": "lost"}
    secret = token.rsplit("_", 1)[1]
    wrong_secret = token[: -len(secret)] + ("A" if secret[0] != "A" else "B") + secret[1:]
    other_id = f"attest_{'0' * 16}_{secret}"  # a real secret under an id that has none
    for headers in ({}, {"authorization": f"Basic {token}"}, {"authorization": "Bearer"},
                    _auth(wrong_secret), _auth(other_id), _auth(token + "x"),
                    _auth("x" * 100_000)):
        for path in ADMIN_GETS:
            _unauthorized(get(path, headers=headers))
        _unauthorized(post("/v1/revocations", json=body, headers=headers))
    for path in ADMIN_GETS:
        assert get(path, headers=_auth(token)).status_code == 200
    # Revoked with `attest admin token revoke`: refused from then on, like a wrong one.
    assert _cli(service, "admin", "token", "revoke", token_id, "--store",
                service.url).exit_code == 0
    for path in ADMIN_GETS:
        _unauthorized(get(path, headers=_auth(token)))
    _unauthorized(post("/v1/revocations", json=body, headers=_auth(token)))
    # Nothing was revoked by any of the refused requests.
    with Store.open(service.url) as store, store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM revocations") == 0


def test_the_store_keeps_only_a_tokens_hash(service: Service) -> None:
    token_id, token = _token(service, "ci")
    with Store.open(service.url) as store, store.read() as tx:
        rows = [tuple(row) for row in tx.all("SELECT * FROM admin_tokens")]
    assert len(rows) == 1 and token_id in rows[0]
    assert not any(token in str(value) or token.rsplit("_", 1)[1] in str(value)
                   for value in rows[0])
    listed = _cli(service, "admin", "token", "list", "--store", service.url, "--json")
    assert json.loads(listed.output) == [
        {"id": token_id, "name": "ci", "created_at": rows[0][3], "revoked_at": None}]
    assert token not in listed.output


def test_a_host_revoked_by_an_admin_is_denied_and_the_revocation_logged(
        service: Service) -> None:
    _, token = _token(service, "oncall")
    assert verify(service.client, service.rig.issue(nonce=challenge(service.client)))["accepted"]
    answer = service.client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "host", "subject": "web-1", "reason": "disk stolen"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["subjects"][0] == "web-1"
    later = verify(service.client, service.rig.issue(nonce=challenge(service.client)))
    assert later["accepted"] is False and "revoked" in later["reasons"], later
    listed = service.client.get("/v1/revocations", headers=_auth(token)).json()
    assert [(r["kind"], r["subject"], r["reason"]) for r in listed["revocations"]][:1] == [
        ("host", "web-1", "disk stolen")]
    exported = _cli(service, "audit", "export", "--store", service.url)
    entries = [json.loads(line) for line in exported.output.splitlines() if line.strip()]
    revocations = [e for e in entries if e["decision"] == "revoked"]
    assert revocations and revocations[0]["verifier"] == "admin:oncall"
    assert _cli(service, "audit", "verify", "--store", service.url).exit_code == 0


def test_an_artifact_revoked_by_an_admin_is_denied(service: Service) -> None:
    _, token = _token(service)
    artifact = service.rig.issue(nonce=challenge(service.client))
    jti = json.loads(_b64(artifact.split(b".")[1]))["jti"]
    answer = service.client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "jti", "subject": jti, "reason": "leaked"})
    assert answer.status_code == 200, answer.text
    decision = verify(service.client, artifact)
    assert decision["accepted"] is False and "revoked" in decision["reasons"], decision


def test_a_revocation_request_must_be_one(service: Service) -> None:
    _, token = _token(service)

    def post(body: object) -> Any:
        return service.client.post("/v1/revocations", headers=_auth(token),
                                   content=json.dumps(body).encode())

    for body in ({"kind": "planet", "subject": "x", "reason": "r"},
                 {"kind": "ak", "subject": "not hex", "reason": "r"},
                 {"kind": "key", "subject": "ab" * 200, "reason": "r"},
                 {"kind": "host", "subject": "h" * 300, "reason": "r"},
                 {"kind": "approval", "subject": "12", "reason": "r"},
                 {"kind": "host", "subject": "web-1", "reason": " "},
                 {"kind": "host", "subject": "web-1", "reason": "r" * 2000},
                 {"kind": "host", "subject": "web-1"},
                 {"kind": "host", "subject": 5, "reason": "r"},
                 {"kind": "host", "subject": "web\x00-1", "reason": "r"},
                 {"kind": "host", "subject": "web-1", "reason": "r\x00"},
                 {"kind": "host", "subject": "web-1", "reason": "r", "also": 1}):
        answer = post(body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request"
    lone = service.client.post("/v1/revocations", headers=_auth(token),
                               content=b'{"kind": "host", "subject": "\\ud800", "reason": "r"}')
    assert lone.status_code == 422, lone.text
    deep = service.client.post("/v1/revocations", headers=_auth(token),
                               content=b'{"kind": ' + b"[" * 50 + b"]" * 50 + b"}")
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "malformed_json"
    with Store.open(service.url) as store, store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM revocations") == 0


def test_revocations_are_listed_a_bounded_page_at_a_time(service: Service) -> None:
    _, token = _token(service)
    for n in range(5):
        answer = service.client.post("/v1/revocations", headers=_auth(token), json={
            "kind": "jti", "subject": f"jti-{n}", "reason": f"r{n}"})
        assert answer.status_code == 200, answer.text
    seen: list[str] = []
    after: int | None = 0
    while after is not None:
        page = service.client.get(f"/v1/revocations?limit=2&after={after}",
                                  headers=_auth(token)).json()
        assert len(page["revocations"]) <= 2
        seen += [r["subject"] for r in page["revocations"]]
        after = page["next"]
    assert seen == [f"jti-{n}" for n in range(5)]
    for query in ("limit=0", "limit=501", "after=-1", "after=x", f"after={2**70}"):
        answer = service.client.get(f"/v1/revocations?{query}", headers=_auth(token))
        assert answer.status_code == 422, (query, answer.text)


def test_the_hosts_view_follows_each_hosts_decisions(service: Service, tmp_path: Path) -> None:
    _, token = _token(service)

    def hosts(client: TestClient = service.client) -> dict[str, Any]:
        answer = client.get("/v1/hosts", headers=_auth(token))
        assert answer.status_code == 200, answer.text
        return {h["host"]: h for h in answer.json()["hosts"]}

    assert hosts() == {}
    artifact = service.rig.issue(nonce=challenge(service.client))
    before = int(time.time())
    assert verify(service.client, artifact)["accepted"]
    web = hosts()["web-1"]
    assert web["state"] == "trusted" and web["reasons"] == []
    assert web["last_decision"]["accepted"] is True and web["last_quote_at"] >= before
    assert web["last_decision"]["audit_index"] == 0
    # A replay names the host: its last decision is now that denial, with its reasons;
    # the last accepted quote stays where it was.
    assert not verify(service.client, artifact)["accepted"]
    web = hosts()["web-1"]
    assert web["state"] == "untrusted" and "replayed" in web["reasons"]
    assert web["last_decision"]["accepted"] is False
    assert web["last_quote_at"] >= before
    paged = service.client.get("/v1/hosts?after=%00&limit=1", headers=_auth(token))
    assert paged.status_code == 422, paged.text  # PostgreSQL's text holds no NUL
    # Garbage with no host, and a denial naming a host never accepted: no new rows.
    verify(service.client, b"not.a.jws")
    assert set(hosts()) == {"web-1"}
    # The same store, an hour and more later: no acceptance since, so stale.
    later = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url,
                       service.home, clock=lambda: time.time() + 7200)
    with TestClient(later) as client:
        assert hosts(client)["web-1"]["state"] == "stale"
    service.client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "host", "subject": "web-1", "reason": "retired"})
    web = hosts()["web-1"]
    assert web["state"] == "revoked" and web["revocation"] == "retired"


def test_audit_entries_are_for_admins_and_paged(service: Service) -> None:
    _, token = _token(service)
    for _ in range(3):
        verify(service.client, b"garbage")
    page = service.client.get("/v1/audit/entries?start=1&limit=2", headers=_auth(token))
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    assert [e["index"] for e in entries] == [1, 2] and page.json()["next"] == 3
    assert json.loads(entries[0]["data"])["decision"] == "denied"
    last = service.client.get("/v1/audit/entries?start=2", headers=_auth(token)).json()
    assert [e["index"] for e in last["entries"]] == [2] and last["next"] is None
    too_many = service.client.get("/v1/audit/entries?limit=100000", headers=_auth(token))
    assert too_many.status_code == 422


def test_admin_requests_with_the_store_gone_are_503_never_401_or_500(
        service: Service) -> None:
    _, token = _token(service)
    store = service.client.app.state.service.store  # type: ignore[attr-defined]
    store.close()
    for stale in service.home.glob("verifier.db-*"):
        stale.unlink()
    (service.home / "verifier.db").write_bytes(b"not a database " * 512)
    for answer in (service.client.get("/v1/hosts", headers=_auth(token)),
                   service.client.post("/v1/revocations", headers=_auth(token), json={
                       "kind": "host", "subject": "web-1", "reason": "lost"})):
        assert answer.status_code == 503, answer.text
        assert "Traceback" not in answer.text


@pytest.mark.parametrize("name", ["", "x" * 65, "tab\there"])
def test_a_token_name_must_be_short_visible_text(service: Service, name: str) -> None:
    result = _cli(service, "admin", "token", "create", "--name", name, "--store", service.url)
    assert result.exit_code == 2, result.output


def _b64(segment: bytes) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def test_the_openapi_document_describes_the_admin_and_operations_routes(
        service: Service) -> None:
    paths = service.client.get("/v1/openapi.json").json()["paths"]
    for path in ADMIN_GETS:
        assert "401" in paths[path]["get"]["responses"], path
    assert "401" in paths["/v1/revocations"]["post"]["responses"]
    body = paths["/v1/revocations"]["post"]["requestBody"]["content"]["application/json"]
    kinds = [choice["properties"]["kind"]["const"] for choice in body["schema"]["oneOf"]]
    assert kinds == ["jti", "key", "ak", "host", "ek", "approval"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/audit/head", "/v1/audit/proof/inclusion",
            "/v1/audit/proof/consistency"} <= set(paths)
    assert "503" in paths["/readyz"]["get"]["responses"]
