"""The agent's watcher: this host's own event feed, held open, turned into "stop these".

Supervised execution (attest run --supervise) must learn within about a second that what
the agent authorized was cut. The verifier streams each host the events concerning it
(GET /v1/hosts/{host}/events, attest.server.hostfeed) under a watch token that each
accepted report's answer carries. :class:`Watcher` is a daemon thread that:

- connects with the newest credential a callable supplies (the report loop stores the
  ``watch`` member of each accepted answer: :meth:`Credential.from_answer`), resuming
  after its cursor (``Last-Event-ID``); its first cursor is the credential's ``after``,
  so it acts on what happens from then on, not on the host's history;
- reconnects after every error, end of stream or refused token, with a bounded,
  growing pause (reset once a stream opens);
- reads hostile bytes: the URL checked as every verifier URL (attest.host.http), TLS
  verified, every line and every event bounded, JSON strict, ids increasing, anything
  else ends the connection;
- calls ``on_revoked(jtis, reason)`` for each event that cuts something of this host:
  a revocation with the jtis it lists (``None``: everything of this host: the host,
  its EK or AK, more artifacts than a listing holds, a listing that is not one), or a
  trust state turned untrusted or stale (``None``). The rule that makes jtis enough,
  cascades included: attest.store.eventhosts.

Fail closed, and where it stops: a malformed cut is everything of the host. The watcher
never decides that the verifier is out of reach for too long (the report loop and the
supervisor do, from :attr:`Watcher.last_contact` and their own reports): an event it
could not read is one it will read after reconnecting, from its cursor, unless the
verifier is gone, which the reports see.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest import strictjson
from attest.host.http import check_verifier_url, tls_context

Listener = Callable[[frozenset[str] | None, str], None]

MAX_LINE = 32 * 1024  # the service's event data is at most 16 KiB of JSON, plus its frame
MAX_EVENT = 64 * 1024
MAX_TOKEN = 4096
MAX_JTI = 128
MAX_JTIS = 1000
MAX_REASON = 200
STREAM_S = 300  # what the feed grants at most: it ends, the watcher reconnects
# A socket read waits this long at most: the feed sends a heartbeat every 15 s.
READ_TIMEOUT_S = 45.0
BACKOFF_S = (0.25, 10.0)  # the first pause after a failure, the longest
# A host id is up to 255 characters, each up to 4 bytes of UTF-8, each byte %XX at most.
_FEED = re.compile(r"/v1/hosts/[A-Za-z0-9._~!$&'()*+,;=:@%-]{1,3060}/events")
_CUT_STATES = frozenset({"untrusted", "stale"})
_log = logging.getLogger(__name__)


class FeedError(Exception):
    """What the verifier sent is not a feed this watcher reads: the connection ends."""


@dataclass(frozen=True)
class Credential:
    """A watch token, until when it is good, the feed's path, the first cursor."""

    token: str
    expires_at: int
    events: str
    after: int

    @classmethod
    def from_answer(cls, watch: object) -> Credential:
        """The ``watch`` member of an accepted report's answer, checked (ValueError)."""
        if not isinstance(watch, Mapping):
            raise ValueError("the answer's watch is not an object")
        token, expires, events, after = (watch.get(k) for k in
                                         ("token", "expires_at", "events", "after"))
        if not (isinstance(token, str) and 0 < len(token) <= MAX_TOKEN and token.isascii()
                and token.isprintable() and " " not in token):
            raise ValueError("the answer's watch token is not one")
        if (not isinstance(events, str) or not _FEED.fullmatch(events)
                or events.split("/")[3] in (".", "..")):
            raise ValueError("the answer's watch events is not a host's feed path")
        return cls(token, _count(expires), events, _count(after))


class CredentialSlot:
    """The newest watch credential, shared by the report loop (which stores each
    accepted answer's) and the watcher (which calls it): thread-safe, never older."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: Credential | None = None

    def __call__(self) -> Credential | None:
        with self._lock:
            return self._newest

    def offer(self, answer: Mapping[str, Any]) -> Credential | None:
        """Keep the ``watch`` of a report's ``answer`` if it is accepted and carries one
        that expires later than the one kept; the credential now kept. A malformed one is
        refused (ValueError) and the kept one stays."""
        if answer.get("accepted") is not True or "watch" not in answer:
            return self()
        offered = Credential.from_answer(answer["watch"])
        with self._lock:
            if self._newest is None or offered.expires_at >= self._newest.expires_at:
                # The first cursor stays the first: a later answer's is past events the
                # watcher may not have read yet.
                after = offered.after if self._newest is None else self._newest.after
                self._newest = Credential(offered.token, offered.expires_at,
                                          offered.events, after)
            return self._newest


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        raise ValueError("the answer's watch times and cursor are not integers")
    return value


class Watcher:
    """The thread holding this host's feed open (see the module)."""

    def __init__(self, verifier: str, credential: Callable[[], Credential | None],
                 on_revoked: Listener, *, cacert: Path | None = None,
                 insecure: bool = False, backoff: tuple[float, float] = BACKOFF_S,
                 read_timeout: float = READ_TIMEOUT_S, stream_s: int = STREAM_S) -> None:
        check_verifier_url(verifier, insecure=insecure)  # UsageError, as for every URL
        parts = urllib.parse.urlsplit(verifier)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = tls_context(cacert) if self._https else None
        self._credential = credential
        self._on_revoked = on_revoked
        self._backoff = backoff
        self._read_timeout = read_timeout
        self._stream_s = stream_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="attest-watch", daemon=True)
        self.cursor: int | None = None  # the last event handled (None: no credential yet)
        self.last_contact: float | None = None  # time.monotonic() of the last bytes read
        self.streams = 0  # how many streams opened (for the report loop's health)
        self.refused = 0  # how many times the verifier refused the token (401)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread: the open stream is shut, the pause between tries cut short."""
        self._stop.set()
        with self._lock:
            connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):  # closed already: the read has returned
                connection.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            credential = self._credential()
            if credential is None:  # no accepted report yet: wait for one
                if self._stop.wait(self._backoff[0]):
                    return
                continue
            if self.cursor is None:
                self.cursor = credential.after
            try:
                opened = self._follow(credential)
            except (OSError, http.client.HTTPException, FeedError) as exc:
                opened = False
                if not self._stop.is_set():
                    _log.warning("host feed: %s", _said(exc))
            except Exception:  # noqa: BLE001 - a listener's or our own bug: logged
                opened = False
                _log.exception("host feed: the event could not be handled; "
                               "it is read again after reconnecting")
            failures = 0 if opened else failures + 1
            if self._wait(self._pause(failures), credential.token):
                return

    def _pause(self, failures: int) -> float:
        """The pause before the next try: the shortest after a stream that ended (so a
        verifier ending streams at once can't make a busy loop), growing to the longest
        while tries fail, spread so that a fleet does not reconnect in step."""
        first, longest = self._backoff
        pause = min(longest, first * 2 ** min(failures, 16)) if failures else first
        return pause * (0.5 + random.random() / 2)  # noqa: S311 - spread, not secrecy

    def _wait(self, pause: float, token: str) -> bool:
        """Sleep ``pause`` seconds, cut short by a new token (a refused one is replaced by
        the next accepted report's); whether the watcher was stopped."""
        deadline = time.monotonic() + pause
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, self._backoff[0])):
                return True
            fresh = self._credential()
            if fresh is not None and fresh.token != token:
                return False
        return self._stop.is_set()

    def _follow(self, credential: Credential) -> bool:
        """One stream, read until it ends; whether it opened (a 200 feed)."""
        connection = self._connect()
        with self._lock:
            if self._stop.is_set():
                connection.close()
                return True
            self._connection = connection
        try:
            connection.request("GET", f"{self._prefix}{credential.events}?timeout={self._stream_s}",
                               headers={"Authorization": f"Bearer {credential.token}",
                                        "Accept": "text/event-stream",
                                        "Last-Event-ID": str(self.cursor)})
            response = connection.getresponse()
            if self._stop.is_set():  # stopped while connecting: no shutdown reached it
                return True
            if response.status == 401:
                self.refused += 1
            if response.status == 409:
                self._restart(response.getheader("Attest-Newest-Event"))
            if response.status != 200:
                raise FeedError(f"the verifier answered HTTP {response.status} to the feed"
                                + (" (the watch token is refused: waiting for the next "
                                   "accepted report's)" if response.status == 401 else ""))
            media = (response.getheader("Content-Type") or "").split(";")[0].strip()
            if media.lower() != "text/event-stream":
                raise FeedError("the verifier's feed is not text/event-stream")
            self.streams += 1
            self._read(response)
            return True
        finally:
            with self._lock:
                self._connection = None
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port,
                                               timeout=self._read_timeout,
                                               context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._read_timeout)

    def _restart(self, newest: str | None) -> None:
        """The verifier holds no event up to the cursor (a new or restored store): what
        it cut since the cursor's store is unknown, so everything of the host is cut
        (fail closed), then the feed is read from the verifier's newest event on."""
        if newest is None or not (newest.isascii() and newest.isdigit()
                                  and len(newest) <= 19):
            raise FeedError("the verifier does not hold the feed's cursor, nor says its newest")
        number = int(newest)
        if self.cursor is not None and number >= self.cursor:
            raise FeedError("the verifier refused a cursor it holds")
        # The cut is the verifier's newest event: while the listener hears it, the cursor
        # is the event before it, in the new store's numbering (Enforcement records the
        # cut against the cursor it reads, and readmits once an answer is decided at or
        # after it; the old store's cursor would hold runs back until the new ids pass it).
        old, self.cursor = self.cursor, number - 1
        try:
            self._on_revoked(None, "the verifier holds no event up to this feed's cursor (a "
                             "new or restored store): what was cut since is unknown")
        except BaseException:
            self.cursor = old  # only once heard: a listener that failed hears it again
            raise
        self.cursor = number
        raise FeedError(f"the verifier's events restart at {number}: everything cut")

    def _read(self, response: http.client.HTTPResponse) -> None:
        fields: dict[str, str] = {}
        size = 0
        while not self._stop.is_set():
            line = response.readline(MAX_LINE + 1)
            if not line:
                return  # the stream ended (its timeout, the token's expiry): reconnect
            self.last_contact = time.monotonic()
            if len(line) > MAX_LINE or not line.endswith(b"\n"):
                raise FeedError(f"a feed line is longer than {MAX_LINE} bytes, or cut short")
            size += len(line)
            if size > MAX_EVENT:
                raise FeedError(f"a feed event is longer than {MAX_EVENT} bytes")
            text = line.rstrip(b"\r\n")
            if not text:  # the end of an event
                if "data" in fields:
                    self._handle(fields)
                fields, size = {}, 0
                continue
            if text.startswith(b":"):
                continue  # a comment: the heartbeat
            name, _, value = text.partition(b":")
            if name in (b"id", b"event", b"data"):
                if name.decode() in fields:
                    raise FeedError("a feed event repeats a field")  # one data line each
                fields[name.decode()] = value.removeprefix(b" ").decode("utf-8", "replace")

    def _handle(self, fields: dict[str, str]) -> None:
        ident = fields.get("id", "")
        if not (ident.isascii() and ident.isdigit() and len(ident) <= 19):
            raise FeedError("a feed event's id is not a cursor")
        number = int(ident)
        if self.cursor is not None and number <= self.cursor:
            raise FeedError("a feed event's id does not follow the cursor")
        try:
            event = strictjson.loads(fields["data"].encode())
        except (ValueError, RecursionError):
            raise FeedError("a feed event's data is not JSON") from None
        if not isinstance(event, dict) or event.get("id") != number:
            raise FeedError("a feed event's data is not the event its id names")
        cut = cuts(event)
        if cut is not None:
            self._on_revoked(*cut)
        self.cursor = number  # only once handled: a listener that failed gets it again


def cuts(event: Mapping[str, Any]) -> tuple[frozenset[str] | None, str] | None:
    """What ``event`` (one of this host's feed, as JSON) cuts: (the jtis, or None for
    everything of the host; a reason for the log), or None when it cuts nothing."""
    kind, data = event.get("kind"), event.get("data")
    if not isinstance(data, Mapping):
        data = {}
    if kind == "host_state":
        state = data.get("state")
        if state == "trusted":
            return None
        reasons = data.get("reasons")
        why = ",".join(r for r in reasons if isinstance(r, str)) \
            if isinstance(reasons, list) else ""
        return None, _bounded(f"host_{state}" + (f": {why}" if why else ""))
    if kind != "revocation":
        return None  # a kind this watcher does not know cuts nothing it authorized
    what = f"revoked {data.get('kind')} {data.get('subject')}: {data.get('reason')}"
    jtis = data.get("jtis")
    if (isinstance(jtis, list) and 0 < len(jtis) <= MAX_JTIS
            and all(isinstance(j, str) and 0 < len(j) <= MAX_JTI for j in jtis)):
        return frozenset(jtis), _bounded(what)
    return None, _bounded(what)  # null, absent or malformed: everything (fail closed)


def _bounded(text: str) -> str:
    # From the verifier: shown to people and logged, so short and printable.
    kept = "".join(c if c.isprintable() else "?" for c in text[:MAX_REASON])
    return kept + ("..." if len(text) > MAX_REASON else "")


def _said(exc: BaseException) -> str:
    return _bounded(str(exc) or type(exc).__name__)
