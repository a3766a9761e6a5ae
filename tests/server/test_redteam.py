"""Attacks on the service and its clients (issue 13's red team): each test is an attack
that once worked, kept so that it keeps failing. The service runs on a real store and
the hosts' artifacts come from a real swtpm (tests/verify/rig.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from attest.host.http import VerifierUnreachable, post_json
from attest.policy import NonceMode
from attest.server.app import create_app
from attest.server.operate import OpsConfig
from attest.store import default_url, sqlite
from tests.server.conftest import Service
from tests.server.serving import Quiet, answering
from tests.verify.rig import Rig


@pytest.fixture
def limited(service: Service) -> Iterator[TestClient]:
    """The service again on the same store, with the per-host rate limit on; server
    exceptions become answers (what a client over the network sees)."""
    app = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url, service.home,
                     operations=OpsConfig(rate=1000.0, burst=1000))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_jws_header_nested_too_deep_is_no_500_under_the_rate_limit(
        limited: TestClient) -> None:
    """The rate limit reads the artifact's JWS header (its kid) before anything else: a
    header of 1500 nested arrays made its JSON reader raise RecursionError, a 500."""
    header = base64.urlsafe_b64encode(b"[" * 1500).rstrip(b"=").decode()
    bomb = f"{header}.e30.AAAA"
    for answer in (limited.post("/v1/verify", json={"artifact": bomb}),
                   limited.post("/v1/verify", content=bomb,
                                headers={"content-type": "application/jose"})):
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] is False
        assert answer.json()["denials"][0]["reason"] == "malformed_artifact"


@pytest.fixture
def redirector() -> Iterator[tuple[str, list[str]]]:
    """A "verifier" on loopback that answers every POST with 302 to another host
    (127.0.0.2), where a server answers JSON to whatever reaches it: the URL to post to
    and the requests the other host saw."""
    seen: list[str] = []

    class Elsewhere(Quiet):
        def do_GET(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.answer_json(200, json.dumps({"nonce": "AAAA", "result": "x"}).encode())

        do_POST = do_GET

    class Redirect(Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(302)
            self.send_header("Location", f"{elsewhere}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with answering(Elsewhere, "127.0.0.2") as elsewhere, answering(Redirect) as origin:
        yield origin, seen


def test_the_client_follows_no_redirect_to_another_host(
        redirector: tuple[str, list[str]]) -> None:
    """urllib turned a 302 to a POST into a GET to wherever Location said (another host,
    plain http, past check_verifier_url): the challenge came from there."""
    url, seen = redirector
    with pytest.raises(VerifierUnreachable, match="HTTP 302"):
        post_json(f"{url}/v1/challenges", b"{}")
    with pytest.raises(VerifierUnreachable, match="HTTP 302"):
        post_json(f"{url}/v1/verify", b"x.y.z", "application/jose")
    assert seen == []


@pytest.fixture
def trickler() -> Iterator[str]:
    """A "verifier" on loopback that answers 200 with a JSON nonce, but sends the body's
    first 40 bytes (JSON whitespace) one every 0.25 s: each read gets its byte well
    within any timeout, the answer takes 10 s in all."""

    class Trickle(Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b" " * 40 + json.dumps({"nonce": "AAAA"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            try:
                for byte in body[:40]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.25)
                self.wfile.write(body[40:])
            except OSError:
                pass  # the client gave up: what it should do

    with answering(Trickle) as base:
        yield base


def test_an_answer_trickled_a_byte_at_a_time_is_given_up(trickler: str) -> None:
    """The client's timeout bounded each socket read only: a verifier (or whoever answers
    at a plain-http URL) sending a byte just inside it held `attest run` as long as it
    liked (1 MiB of answer at a byte per timeout). Now the whole exchange is bounded."""
    with pytest.raises(VerifierUnreachable, match="did not answer within"):
        post_json(f"{trickler}/v1/challenges", b"{}", timeout=1.0)


def test_a_store_out_of_reach_is_said_to_the_client_never_located(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone's request while the database was locked (another writer past the busy
    timeout: SQLite here; a lost PostgreSQL server alike) got denials quoting the store:
    its URL (the file's path; PostgreSQL's user, host, port and database) and the
    driver's message. The client is told the store is unavailable; the operator's log
    says where."""
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 300)  # read when a connection opens
    home = rig.tmp / "verifier"
    home.mkdir()
    app = create_app(rig.policy(nonce=NonceMode.REQUIRED), default_url(home), home)
    with TestClient(app, raise_server_exceptions=False) as client:
        artifact = rig.issue(nonce=client.post("/v1/challenges", json={}).json()["nonce"])
        writer = sqlite3.connect(home / "verifier.db", isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # holds the write lock
            answers = [client.post("/v1/verify", json={"artifact": artifact.decode()}),
                       client.post("/v1/verify", json={"artifact": "no artifact"})]
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    for answer in answers:
        assert answer.status_code == 200, answer.text
        decision = answer.json()
        assert decision["accepted"] is False
        assert "audit_unavailable" in decision["reasons"], decision
        for denial in decision["denials"]:
            assert str(home) not in denial["message"] and "sqlite" not in denial["message"]
        assert "verifier.db" not in answer.text, answer.text


def test_forgeries_naming_a_hosts_kid_do_not_spend_that_hosts_rate_limit(
        service: Service) -> None:
    """The rate limit's bucket was the artifact header's kid alone, the client's word: a
    kid is public (every artifact's header shows it), so anyone sent `burst` garbage
    artifacts naming a host's kid, and that host's own genuine run was refused 429 for
    as long as they kept it up. A kid's bucket is now per client address too."""
    app = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url, service.home,
                     operations=OpsConfig(rate=0.001, burst=3))
    artifact = service.rig.issue(nonce=service.client.post("/v1/challenges",
                                                            json={}).json()["nonce"])
    kid = json.loads(base64.urlsafe_b64decode(artifact.split(b".")[0] + b"=="))["kid"]
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "ES256", "typ": "attest-artifact+jws", "kid": kid}).encode()).rstrip(b"=")
    forged = header.decode() + ".e30.c2ln"
    with TestClient(app, client=("198.51.100.7", 40000)) as host:
        attacker = TestClient(app, client=("203.0.113.9", 40000))  # the same app, elsewhere
        answers = [attacker.post("/v1/verify", json={"artifact": forged}).status_code
                   for _ in range(4)]
        assert answers == [200, 200, 200, 429]  # the forger is limited...
        genuine = host.post("/v1/verify", json={"artifact": artifact.decode()})
        assert genuine.status_code == 200, genuine.text  # ...the host is not
        assert genuine.json()["accepted"] is True, genuine.json()["denials"]


@pytest.fixture
def erring() -> Iterator[tuple[str, list[int]]]:
    """A "verifier" on loopback answering each POST with the next status of its list and a
    JSON error body, as the service's error handlers do."""
    statuses: list[int] = []

    class Erring(Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = statuses.pop(0)
            body = json.dumps({"error": {"status": status, "code": "x", "message": "y"}})
            self.answer_json(status, body.encode())

    with answering(Erring) as base:
        yield base, statuses


@pytest.mark.parametrize("status", [429, 500, 502])
def test_a_verifier_that_refuses_to_serve_is_unreachable_not_a_forgery(
        erring: tuple[str, list[int]], status: int) -> None:
    """A rate-limited (429) or failing (5xx) service answered JSON that `attest run` read
    as a decision without a signed result: denied as invalid_signature (exit 1), a forgery
    to whoever reads it, when the service only could not serve (exit 3)."""
    url, statuses = erring
    statuses.append(status)
    with pytest.raises(VerifierUnreachable, match=f"HTTP {status}"):
        post_json(f"{url}/v1/verify", b"x.y.z", "application/jose")
    statuses.extend([429, 200])  # an idempotent request (a challenge) tries again
    assert "error" in post_json(f"{url}/v1/challenges", b"{}", retries=1)


def test_bodies_held_at_once_are_bounded(service: Service) -> None:
    """Each body was capped, not how many the process held together: connections each
    sending a large body slowly (a batch may be 32 MiB) held memory without bound before
    anything was verified. Past the process's budget a body is refused, 503 `busy`, and
    the bytes come back once the request held them is answered."""
    app = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url, service.home,
                     body_budget=1 << 20)
    half = b"A" * (600 << 10)

    async def attack() -> tuple[int, int, int]:
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b'{"artifacts": ["' + half  # held while the rest is awaited
            await release.wait()
            yield b'"]}'

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            holding = asyncio.ensure_future(client.post("/v1/verify:batch", content=slow()))
            while True:  # until the slow body's first chunk is in
                await asyncio.sleep(0.01)
                if app.state.body_budget.used:
                    break
            refused = await client.post("/v1/verify", json={"artifact": half.decode()})
            release.set()
            held = await holding
            again = await client.post("/v1/verify", json={"artifact": half.decode()})
        assert refused.json()["error"]["code"] == "busy", refused.text
        return refused.status_code, held.status_code, again.status_code

    assert asyncio.run(attack()) == (503, 200, 200)
    assert app.state.body_budget.used == 0
