"""The agent's watcher (attest.host.agent.watch) against a real `attest serve` on loopback:
real reports from a host on its swtpm bring the watch token, real revocations through the
admin API come out as "stop these jtis" (or everything of the host), once each, in order,
across reconnections; a refused token waits for the next; hostile feed bytes (from a
verifier of the test's own on loopback) end the connection or, when they only garble a
cut, cut everything of the host (fail closed)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from attest.errors import UsageError
from attest.host.agent.watch import MAX_LINE, Credential, CredentialSlot, Watcher, cuts
from attest.policy import NonceMode, Rule
from tests.server.serving import admin_token, policy_file, served
from tests.verify.conftest import rig
from tests.verify.rig import HOST_ID, Rig

__all__ = ["rig"]

WAIT_S = 30.0
RULES = (Rule(("*",), ("exec",), ("*",), ("*",)), Rule(("*",), ("report",), ("*",), ("*",)))
FAST = (0.05, 0.5)  # the watcher's backoff in these tests


@dataclass
class Heard:
    """What the listener was told, in order."""

    cuts: list[tuple[frozenset[str] | None, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, jtis: frozenset[str] | None, reason: str) -> None:
        with self.lock:
            self.cuts.append((jtis, reason))

    def wait_for(self, count: int) -> list[tuple[frozenset[str] | None, str]]:
        deadline = time.monotonic() + WAIT_S
        while True:
            with self.lock:
                if len(self.cuts) >= count:
                    return list(self.cuts)
            assert time.monotonic() < deadline, f"heard {self.cuts}, waited for {count}"
            time.sleep(0.02)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _post(base: str, path: str, body: object, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}{path}", data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read())


@dataclass
class Verifier:
    base: str
    admin: str
    rig: Rig

    def nonce(self) -> str:
        nonce: str = _post(self.base, "/v1/challenges", {})["nonce"]
        return nonce

    def report(self) -> Credential:
        raw = self.rig.issue("agent", action="report", nonce=self.nonce())
        answer = _post(self.base, "/v1/reports", {"report": raw.decode()})
        assert answer["accepted"] is True, answer["denials"]
        return Credential.from_answer(answer["watch"])

    def run(self) -> str:
        decided = _post(self.base, "/v1/verify",
                        {"artifact": self.rig.issue(nonce=self.nonce()).decode()})
        assert decided["accepted"] is True, decided["denials"]
        jti: str = decided["jti"]
        return jti

    def revoke(self, kind: str, subject: str) -> None:
        _post(self.base, "/v1/revocations",
              {"kind": kind, "subject": subject, "reason": f"test revokes {subject}"},
              self.admin)


@pytest.fixture
def verifier(rig: Rig) -> Iterator[Verifier]:
    home = rig.tmp / "verifier"
    home.mkdir()
    token = admin_token(home)
    policy = policy_file(rig, nonce=NonceMode.REQUIRED, report_max_age=60, rules=RULES)
    with served(policy, home) as base:
        yield Verifier(base, token, rig)


@contextmanager
def watching(base: str, credential: Callable[[], Credential | None], heard: Heard,
             **options: Any) -> Iterator[Watcher]:
    watcher = Watcher(base, credential, heard, backoff=FAST, **options)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        assert not watcher.alive


def test_a_revoked_artifact_and_then_its_host_are_heard_within_a_poll(
        verifier: Verifier) -> None:
    credential = verifier.report()
    heard = Heard()
    with watching(verifier.base, lambda: credential, heard) as watcher:
        _wait_until(lambda: watcher.streams >= 1, "the feed to open")
        jti = verifier.run()
        verifier.revoke("jti", jti)
        ((jtis, reason),) = heard.wait_for(1)
        assert jtis == frozenset({jti}) and "test revokes" in reason
        verifier.revoke("host", "web-2")  # another host's: never heard here
        verifier.revoke("host", HOST_ID)
        # In commit order: once this host's revocation is heard, web-2's would have been.
        assert heard.wait_for(2)[1][0] is None  # everything of this host
    # The host's own earlier events (its state turned trusted) came before the cursor
    # the credential gave: history is not acted on; each event was heard once.
    assert len(heard.cuts) == 2 and watcher.cursor is not None


def test_reconnections_resume_from_the_cursor_without_loss_or_duplicates(
        verifier: Verifier) -> None:
    credential = verifier.report()
    heard = Heard()
    jtis = [verifier.run() for _ in range(4)]
    # Streams of one second: the watcher reconnects (Last-Event-ID) between revocations.
    with watching(verifier.base, lambda: credential, heard, stream_s=1) as watcher:
        for n, jti in enumerate(jtis):
            _wait_until(lambda n=n: watcher.streams >= 2 * n + 1, "a new stream")
            verifier.revoke("jti", jti)
        heard.wait_for(len(jtis))
        opened = watcher.streams
        _wait_until(lambda: watcher.streams >= opened + 2, "two more streams")
    assert [cut for cut, _ in heard.cuts] == [frozenset({jti}) for jti in jtis]


def test_a_refused_token_waits_for_the_next_accepted_reports(verifier: Verifier) -> None:
    good = verifier.report()
    forged = Credential(good.token[:-4] + "AAAA", good.expires_at, good.events, good.after)
    current = [forged]
    heard = Heard()
    with watching(verifier.base, lambda: current[0], heard) as watcher:
        _wait_until(lambda: watcher.refused >= 2, "the forged token refused twice")
        assert watcher.streams == 0 and heard.cuts == []
        current[0] = verifier.report()  # the report loop stores the next token
        _wait_until(lambda: watcher.streams >= 1, "the feed to open with the new token")
        jti = verifier.run()
        verifier.revoke("jti", jti)
        assert heard.wait_for(1)[0][0] == frozenset({jti})


def test_a_watch_credential_from_an_answer_is_checked() -> None:
    good = {"token": "abc", "expires_at": 10, "events": "/v1/hosts/web-1/events", "after": 3}
    assert Credential.from_answer(good) == Credential("abc", 10, "/v1/hosts/web-1/events", 3)
    for bad in ({**good, "token": "a b"}, {**good, "token": "x" * 5000},
                {**good, "events": "/v1/events"}, {**good, "events": "/v1/hosts/../events"},
                {**good, "events": "/v1/hosts/a/b/events"},
                {**good, "events": "/v1/hosts/a/events?x=1"}, {**good, "after": True},
                {**good, "expires_at": -1}, {**good, "after": "3"}, [good], None):
        with pytest.raises(ValueError):
            Credential.from_answer(bad)
    slot = CredentialSlot()
    assert slot() is None and slot.offer({"accepted": False, "watch": good}) is None
    assert slot.offer({"accepted": True, "watch": good}) == Credential.from_answer(good)
    later = {**good, "token": "def", "expires_at": 20, "after": 9}
    older = {**good, "token": "old", "expires_at": 5}
    kept = Credential("def", 20, "/v1/hosts/web-1/events", 3)  # the first cursor stays
    assert slot.offer({"accepted": True, "watch": later}) == kept
    assert slot.offer({"accepted": True, "watch": older}) == kept  # never older
    with pytest.raises(ValueError):
        slot.offer({"accepted": True, "watch": {**later, "token": ""}})
    assert slot() == kept
    with pytest.raises(UsageError):  # plain http to another machine, as for every URL
        Watcher("http://verifier.example", lambda: None, Heard())


@pytest.mark.parametrize(("event", "expected"), [
    ({"kind": "revocation", "data": {"jtis": ["a", "b"]}}, frozenset({"a", "b"})),
    ({"kind": "revocation", "data": {"jtis": None}}, None),
    ({"kind": "revocation", "data": {}}, None),
    ({"kind": "revocation", "data": {"jtis": [1]}}, None),
    ({"kind": "revocation", "data": {"jtis": []}}, None),
    ({"kind": "revocation", "data": {"jtis": ["x" * 129]}}, None),
    ({"kind": "revocation", "data": "garbled"}, None),
    ({"kind": "host_state", "data": {"state": "untrusted", "reasons": ["r"]}}, None),
    ({"kind": "host_state", "data": {"state": "stale"}}, None),
    ({"kind": "host_state", "data": {"state": "?"}}, None),
])
def test_what_an_event_cuts_fails_closed(event: dict[str, Any],
                                         expected: frozenset[str] | None) -> None:
    found = cuts(event)
    assert found is not None and found[0] == expected


def test_what_cuts_nothing() -> None:
    assert cuts({"kind": "host_state", "data": {"state": "trusted"}}) is None
    assert cuts({"kind": "something_new", "data": {}}) is None


class _Hostile(BaseHTTPRequestHandler):
    """A verifier of the test's own: answers each feed request with the next script."""

    scripts: ClassVar[list[bytes]] = []
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Last-Event-ID"))
        body = type(self).scripts.pop(0) if type(self).scripts else b""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass  # quiet: the test asserts what the watcher did


def _event(ident: int, kind: str, data: object) -> bytes:
    payload = json.dumps({"id": ident, "kind": kind, "data": data})
    return f"id: {ident}\nevent: {kind}\ndata: {payload}\n\n".encode()


def test_hostile_feed_bytes_end_the_connection_or_cut_everything() -> None:
    _Hostile.scripts = [
        b"data: " + b"x" * (MAX_LINE + 10) + b"\n\n",  # a line past the bound
        _event(5, "revocation", {"jtis": ["j5"]}) + _event(5, "revocation", {"jtis": ["j"]}),
        b"id: 6\ndata: {not json}\n\n",
        b"id: 7\ndata: " + json.dumps({"id": 8, "kind": "revocation"}).encode() + b"\n\n",
        _event(9, "revocation", {"jtis": "everything?"}),
    ]
    _Hostile.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    heard = Heard()
    credential = Credential("t", 2**40, "/v1/hosts/web-1/events", 4)
    try:
        with watching(f"http://127.0.0.1:{server.server_address[1]}", lambda: credential,
                      heard) as watcher:
            found = heard.wait_for(2)
            _wait_until(lambda: not _Hostile.scripts, "every script read")
        assert found == [(frozenset({"j5"}), "revoked None None: None"),
                         (None, "revoked None None: None")]
        # Each connection resumed from the last event handled: the repeated id 5, the
        # bad JSON and the id that its data contradicts moved nothing.
        assert _Hostile.seen[:5] == ["4", "4", "5", "5", "5"]
        assert watcher.cursor == 9
    finally:
        server.shutdown()
        server.server_close()
