"""``GET /v1/events``: revocations made through the API come out as server-sent events,
in order, resumable from a cursor (``after`` or ``Last-Event-ID``) across two service
instances on one SQLite file and a restart, without loss or duplicates."""

from __future__ import annotations

import http.client
import json
import urllib.request
from typing import Any

import pytest
from fastapi.testclient import TestClient

from attest.policy import NonceMode
from attest.server.app import create_app
from attest.store import Store
from attest.store import events as stored
from attest.store.records import RevocationKind
from attest.store.revocations import record
from tests.server.conftest import Service
from tests.server.serving import admin_token, policy_file, served
from tests.server.test_admin import _auth, _token, _unauthorized
from tests.verify.rig import Rig


def _events(client: TestClient, token: str, *, path: str = "/v1/events",
            after: int | None = None, last_event_id: str | None = None
            ) -> list[dict[str, Any]]:
    """The events a catch-up stream (timeout=0) of ``path`` (the admin stream, or a
    host's feed) sends, each its SSE fields and data."""
    headers = _auth(token)
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    query = "timeout=0" if after is None else f"timeout=0&after={after}"
    answer = client.get(f"{path}?{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    found = []
    for block in answer.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":"))
        if "data" in fields:
            data = json.loads(fields["data"])
            assert fields["id"] == str(data["id"]) and fields["event"] == data["kind"]
            found.append(data)
    return found


def _revoke(client: TestClient, token: str, subject: str) -> None:
    answer = client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "host", "subject": subject, "reason": f"retired {subject}"})
    assert answer.status_code == 200, answer.text


def test_a_revocation_through_the_api_is_an_event(service: Service) -> None:
    _, token = _token(service)
    assert _events(service.client, token) == []
    _revoke(service.client, token, "web-9")
    (event,) = _events(service.client, token)
    assert event["kind"] == "revocation" and event["subject"] == "host:web-9"
    assert event["data"] == {"kind": "host", "subject": "web-9", "reason": "retired web-9",
                             "cascaded_from": None, "jtis": None}  # jtis: all of the host
    # The same revocation again changes nothing, so it is no event.
    _revoke(service.client, token, "web-9")
    assert [e["id"] for e in _events(service.client, token)] == [event["id"]]


def test_events_resume_without_loss_or_duplicates_across_instances_and_a_restart(
        service: Service) -> None:
    _, token = _token(service)
    policy = service.rig.policy(nonce=NonceMode.REQUIRED)
    second = create_app(policy, service.url, service.home)
    with TestClient(second) as other:
        # Two instances on one SQLite file, revoking in turn: one stream, in commit order.
        for n in range(6):
            _revoke(service.client if n % 2 else other, token, f"host-{n}")
        seen = _events(other, token)
        assert [e["subject"] for e in seen] == [f"host:host-{n}" for n in range(6)]
        cursor = seen[2]["id"]
        assert [e["id"] for e in _events(service.client, token, after=cursor)] == [
            e["id"] for e in seen[3:]]
    # A restart of the second instance: a new app on the same file resumes from the
    # cursor a client kept (Last-Event-ID), which wins over the URL's after.
    restarted = create_app(policy, service.url, service.home)
    with TestClient(restarted) as again:
        _revoke(again, token, "host-6")
        resumed = _events(again, token, after=0, last_event_id=str(cursor))
    assert [e["subject"] for e in resumed] == [f"host:host-{n}" for n in range(3, 7)]
    ids = [e["id"] for e in seen[:3] + resumed]
    assert ids == sorted(set(ids))
    listed = service.client.get("/v1/revocations", headers=_auth(token)).json()
    assert len(listed["revocations"]) == len(ids)


def test_the_stream_needs_a_token_and_a_cursor_that_is_one(service: Service) -> None:
    _, token = _token(service)
    _unauthorized(service.client.get("/v1/events?timeout=0"))
    _unauthorized(service.client.get("/v1/events?timeout=0",
                                      headers={"authorization": "Bearer nope"}))
    # b"\xb2" is "²" to a server reading headers as Latin-1: a digit to str.isdigit.
    for bad in ("-1", "1.5", "x", "9" * 40, str(2**63), b"\xb2", "\xef\xbc\x91".encode()):
        answer = service.client.get("/v1/events?timeout=0",
                                    headers={**_auth(token), "last-event-id": bad})
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request"
    for query in ("after=-1", "after=x", "timeout=301", f"after={2**63}"):
        answer = service.client.get(f"/v1/events?{query}", headers=_auth(token))
        assert answer.status_code == 422, (query, answer.text)


def test_an_event_commits_with_its_revocation_or_not_at_all(service: Service) -> None:
    with Store.open(service.url) as store:
        try:
            with store.write() as tx:
                record(tx, RevocationKind.HOST, "rolled-back", "test", 1)
                raise RuntimeError("the change fails after its event was written")
        except RuntimeError:
            pass
        with store.read() as tx:
            assert stored.after(tx, 0) == []
            assert tx.scalar("SELECT count(*) FROM revocations") == 0
        with store.write() as tx:
            record(tx, RevocationKind.HOST, "kept", "test", 2)
        with store.read() as tx:
            (event,) = stored.after(tx, 0)
    assert (event.kind, event.subject, event.created_at) == ("revocation", "host:kept", 2)


def test_a_reason_cannot_forge_a_message_on_the_stream(service: Service) -> None:
    """A revocation reason is free text (an administrator's, or a cascade's): line breaks
    in it stay inside the JSON of one data line, never a message of their own."""
    _, token = _token(service)
    forged = "x\n\nid: 999999\nevent: revocation\ndata: {}\r\n\r\ndata: {}\n"
    answer = service.client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "host", "subject": "web-5", "reason": forged})
    assert answer.status_code == 200, answer.text
    raw = service.client.get("/v1/events?timeout=0", headers=_auth(token)).text
    # SSE ends lines at CR, LF or CRLF: the text holds no CR, and one data line.
    assert "\r" in forged and "\r" not in raw and raw.isascii()
    lines = raw.split("\n")
    assert len([line for line in lines if line.startswith("data: ")]) == 1
    assert not any(line.startswith("id: 999999") for line in lines)
    (event,) = _events(service.client, token)
    assert event["data"]["reason"] == forged and event["id"] != 999999


def test_attest_serve_stops_on_sigterm_with_a_stream_open(rig: Rig) -> None:
    """A stream may stay open for minutes: SIGTERM cancels it after the grace rather than
    waiting for it (`served` gives the stop 30 s; the stream asked for 300), and the
    client sees the stream cut, to reconnect with its cursor."""
    home = rig.tmp / "verifier"
    home.mkdir()
    token = admin_token(home)
    with served(policy_file(rig, nonce=NonceMode.REQUIRED), home) as base:
        stream = urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback
            f"{base}/v1/events?timeout=300", headers=_auth(token)), timeout=60)
        assert stream.readline() == b"retry: 1000\n"
    with stream, pytest.raises(http.client.IncompleteRead):
        stream.read()
