"""Webhooks (attest.server.webhooks): a revocation made through the API reaches a loopback
receiver signed, after the receiver failed first (retried with back-off); two replicas
on one store deliver each event once; redirects are not followed; the configuration is
strict."""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from attest.errors import UsageError
from attest.policy import NonceMode
from attest.server import webhooks
from attest.server.app import create_app
from attest.store import Store, default_url
from attest.store.events import record_event
from tests.server.conftest import Service
from tests.server.serving import admin_token, challenge, policy_file, served, verify
from tests.server.test_admin import _auth, _token
from tests.verify.rig import Rig

SECRET = "s3cret-shared-with-the-receiver"  # noqa: S105 - a test receiver's
WAIT_S = 30.0


class Receiver:
    """A loopback HTTP receiver answering ``statuses`` in turn (then the last, always)."""

    def __init__(self, statuses: list[int], location: str = "") -> None:
        self.got: list[tuple[dict[str, str], bytes, int]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    status = statuses[min(len(outer.got), len(statuses) - 1)]
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()},
                                      body, status))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def taken(self) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for headers, body, status in list(self.got)
                if 200 <= status < 300]


@contextmanager
def _receiving(statuses: list[int], location: str = "") -> Iterator[Receiver]:
    receiver = Receiver(statuses, location)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's deliverer polls and backs off in tens of milliseconds, so the
    retries happen quickly."""
    monkeypatch.setattr(webhooks, "Deliverer", _fast_deliverer(webhooks.Deliverer))


def _fast_deliverer(real: type[webhooks.Deliverer]) -> Any:
    def make(store: Store, subscribers: Any, **_: Any) -> webhooks.Deliverer:
        return real(store, subscribers, poll_s=0.02, first_backoff_s=0.05)
    return make


def test_a_revocation_reaches_a_failing_receiver_signed_once_it_recovers(
        service: Service, fast: None) -> None:
    _, token = _token(service)
    with _receiving([500, 503, 204]) as receiver:
        hooked = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url,
                            service.home,
                            subscribers=[webhooks.Subscriber("ops", receiver.url,
                                                             SECRET.encode())])
        with TestClient(hooked) as client:
            answer = client.post("/v1/revocations", headers=_auth(token), json={
                "kind": "host", "subject": "web-7", "reason": "stolen"})
            assert answer.status_code == 200, answer.text
            _wait_for(lambda: len(receiver.taken()) == 1, "the event to be taken")
    # Refused twice, then taken: the same event each time, signed over what was sent.
    assert [status for _, _, status in receiver.got] == [500, 503, 204]
    assert len({body for _, body, _ in receiver.got}) == 1
    (headers, body), = receiver.taken()
    event = json.loads(body)
    assert event["kind"] == "revocation" and event["subject"] == "host:web-7"
    assert headers["attest-event-id"] == str(event["id"])
    expected = webhooks.signature(SECRET.encode(), int(headers["attest-timestamp"]), body)
    assert hmac.compare_digest(headers["attest-signature"], expected)
    assert not hmac.compare_digest(headers["attest-signature"], webhooks.signature(
        b"another secret entirely", int(headers["attest-timestamp"]), body))
    with Store.open(service.url) as store, store.read() as tx:
        assert tx.scalar("SELECT last_id FROM webhook_cursors WHERE subscriber = 'ops'") \
            == event["id"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_two_replicas_deliver_each_event_once_in_order(
        tmp_path: Path, dialect: str, request: pytest.FixtureRequest) -> None:
    url = (default_url(tmp_path) if dialect == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    with _receiving([200]) as receiver, Store.open(url) as one, Store.open(url) as two:
        subscriber = webhooks.Subscriber("siem", receiver.url, SECRET.encode())
        replicas = [webhooks.Deliverer(store, [subscriber], poll_s=0.01)
                    for store in (one, two)]
        for replica in replicas:
            replica.start()
        try:
            for n in range(20):
                with one.write() as tx:
                    record_event(tx, "host_state", f"web-{n}", {"n": n}, now=n)
            _wait_for(lambda: len(receiver.taken()) >= 20, "twenty events")
        finally:
            for replica in replicas:
                replica.stop()
    subjects = [json.loads(body)["subject"] for _, body in receiver.taken()]
    assert subjects == [f"web-{n}" for n in range(20)]


def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    with _receiving([200]) as elsewhere, \
            _receiving([302], location=elsewhere.url) as redirecting, \
            Store.open(default_url(tmp_path)) as store:
        deliverer = webhooks.Deliverer(
            store, [webhooks.Subscriber("x", redirecting.url, SECRET.encode())])
        deliverer.start()  # the cursor row, then the thread
        deliverer.stop()
        with store.write() as tx:
            record_event(tx, "host_state", "web-1", {}, now=1)
        subscriber = deliverer.subscribers[0]
        assert deliverer.deliver_one(subscriber) is False
        assert len(redirecting.got) == 1 and elsewhere.got == []


@pytest.mark.parametrize("listed", [
    {"name": "x"},
    [{"name": "x", "url": "file:///etc/passwd", "secret": SECRET}],
    [{"name": "x", "url": "http://127.0.0.1/", "secret": "short"}],
    [{"name": "x", "url": "http://127.0.0.1/", "secret": SECRET, "extra": 1}],
    [{"name": "../x", "url": "http://127.0.0.1/", "secret": SECRET}],
    [{"name": "x", "url": "http://127.0.0.1/", "secret": SECRET}] * 2,
])
def test_a_webhooks_file_must_be_one(tmp_path: Path, listed: object) -> None:
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps(listed))
    path.chmod(0o600)
    with pytest.raises(UsageError):
        webhooks.load_subscribers(path)
    path.write_text(json.dumps([{"name": "ok", "url": "https://hooks.example/", "secret":
                                 SECRET}]))
    assert webhooks.load_subscribers(path) == [
        webhooks.Subscriber("ok", "https://hooks.example/", SECRET.encode())]


def test_a_webhooks_file_others_may_read_is_refused(tmp_path: Path) -> None:
    """The file holds the secrets that sign events: one the group or others may read (or
    a FIFO, which could hang the start) is refused, as --tls-key is."""
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps([{"name": "ok", "url": "https://hooks.example/",
                                 "secret": SECRET}]))
    for mode in (0o640, 0o604, 0o620):
        path.chmod(mode)
        with pytest.raises(UsageError, match="open to group or others"):
            webhooks.load_subscribers(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UsageError, match="not a regular file"):
        webhooks.load_subscribers(fifo)


def test_attest_serve_streams_and_posts_a_revocation_as_it_happens(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real `attest serve` (uvicorn): a stream already open gets the revocation made
    after it opened, and the webhook configured by ATTEST_SERVE_WEBHOOKS gets it too."""
    home = rig.tmp / "verifier"
    home.mkdir()
    token = admin_token(home)
    with _receiving([200]) as receiver:
        hooks = tmp_path / "webhooks.json"
        hooks.write_text(json.dumps([{"name": "ops", "url": receiver.url, "secret": SECRET}]))
        hooks.chmod(0o600)
        monkeypatch.setenv("ATTEST_SERVE_WEBHOOKS", str(hooks))
        with served(policy_file(rig, nonce=NonceMode.REQUIRED), home) as base:
            opened = urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback
                f"{base}/v1/events?timeout=60", headers=_auth(token)), timeout=30)
            with opened as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                assert stream.readline() == b"retry: 1000\n"
                revoked = urllib.request.Request(  # noqa: S310 - loopback
                    f"{base}/v1/revocations", method="POST", headers={
                        **_auth(token), "content-type": "application/json"},
                    data=json.dumps({"kind": "host", "subject": "web-3",
                                     "reason": "gone"}).encode())
                with urllib.request.urlopen(revoked, timeout=30) as answer:  # noqa: S310
                    assert answer.status == 200
                lines = [stream.readline() for _ in range(4)]
            _wait_for(lambda: len(receiver.taken()) == 1, "the webhook")
    assert lines[0] == b"\n"  # the end of the retry message
    fields = dict(line.decode().rstrip("\n").split(": ", 1) for line in lines
                  if b": " in line and not line.startswith(b":"))
    streamed = json.loads(fields["data"])
    assert streamed["subject"] == "host:web-3" and fields["id"] == str(streamed["id"])
    (_, posted), = receiver.taken()
    assert json.loads(posted) == streamed


def test_a_receiver_that_hangs_holds_up_no_decision(service: Service) -> None:
    """While the receiver holds the delivery open, the service still decides (the
    delivery runs on its own thread, outside any transaction)."""
    _, token = _token(service)
    arrived, release = threading.Event(), threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived.set()
            release.wait(WAIT_S)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    try:
        hooked = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url,
                            service.home, subscribers=[
                                webhooks.Subscriber("slow", url, SECRET.encode())])
        with TestClient(hooked) as client:
            answer = client.post("/v1/revocations", headers=_auth(token), json={
                "kind": "host", "subject": "elsewhere", "reason": "test"})
            assert answer.status_code == 200, answer.text
            assert arrived.wait(WAIT_S)
            decision = verify(client, service.rig.issue(nonce=challenge(client)))
            assert decision["accepted"] is True, decision
            assert not release.is_set()  # the delivery was still held open
            release.set()
    finally:
        release.set()
        receiver.shutdown()
        receiver.server_close()
