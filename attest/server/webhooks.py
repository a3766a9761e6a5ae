"""Webhooks: each event (attest.store.events) POSTed to each configured subscriber,
signed, retried with back-off, from a thread of its own so no decision ever waits on it.

A subscriber is a name, a URL and a shared secret (``ATTEST_SERVE_WEBHOOKS``: a JSON
file, see :func:`load_subscribers`; keep it readable by the service only). The body is
the event's JSON (as ``GET /v1/events`` sends it); the headers carry its id and
``Attest-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``Attest-Timestamp``, so a receiver checks who sent it and refuses an old one replayed.

Replicas on one database share each subscriber's cursor (attest.store.webhooks): one of
them delivers each event, in order; a 2xx answer advances the cursor, anything else (an
error, a timeout, a redirect: never followed) releases it to be retried after a back-off
that doubles up to :data:`MAX_BACKOFF_S`. Delivery is at least once: a receiver dedupes by
``Attest-Event-Id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from attest.cli.terminal import visible
from attest.errors import UsageError
from attest.store import Store
from attest.store import webhooks as cursors
from attest.store.events import Event

POLL_S = 1.0
TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
MIN_SECRET = 16
MAX_SUBSCRIBERS = 32
MAX_FILE_BYTES = 64 << 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_log = logging.getLogger(__name__)


class Subscriber(NamedTuple):
    name: str
    url: str
    secret: bytes


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Attest-Signature`` of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def load_subscribers(path: Path) -> list[Subscriber]:
    """The subscribers a JSON file lists: ``[{"name", "url", "secret"}, ...]``. The file
    holds the secrets: refused when group or others may read or write it."""
    try:
        listed = json.loads(_private_text(path))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the webhooks file {visible(str(path))}: "
                         f"{type(exc).__name__}") from None
    if not isinstance(listed, list) or len(listed) > MAX_SUBSCRIBERS:
        raise UsageError(f"the webhooks file holds a list of at most {MAX_SUBSCRIBERS} "
                         "subscribers")
    found: list[Subscriber] = []
    for item in listed:
        if not isinstance(item, dict) or set(item) != {"name", "url", "secret"}:
            raise UsageError('each webhook is {"name": ..., "url": ..., "secret": ...}')
        name, url, secret = item["name"], item["url"], item["secret"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UsageError("a webhook's name is 1..64 letters, digits, '_', '.', '-'")
        if name in {s.name for s in found}:
            raise UsageError(f"two webhooks are named {name!r}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) \
                or not url.isascii() or len(url) > 2048:
            raise UsageError(f"webhook {name}: the url must be http:// or https://")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            raise UsageError(f"webhook {name}: the secret must be at least {MIN_SECRET} "
                             "characters")
        found.append(Subscriber(name, url, secret.encode("utf-8")))
    return found


def _private_text(path: Path) -> str:
    # The file opened is the one checked (fstat); O_NONBLOCK: a FIFO can't hang the start.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"the webhooks file {visible(str(path))} is not a regular file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(f"the webhooks file {visible(str(path))} is open to group or "
                             f"others (mode {stat.S_IMODE(info.st_mode):o}): whoever reads "
                             "it can sign events as this service",
                             hint=f"chmod 600 {visible(str(path))}")
        data = source.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"the webhooks file is larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would send the signed event where the configuration did not say.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(subscriber: Subscriber, event: Event, now: int) -> bool:
    """POST ``event`` to ``subscriber``; whether it answered 2xx."""
    body = json.dumps(event.to_json(), separators=(",", ":"), sort_keys=True).encode()
    # The scheme is http or https (load_subscribers), never file: or another.
    request = urllib.request.Request(subscriber.url, data=body, method="POST", headers={  # noqa: S310
        "Content-Type": "application/json", "Attest-Event-Id": str(event.id),
        "Attest-Timestamp": str(now),
        "Attest-Signature": signature(subscriber.secret, now, body)})
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as answer:
            return 200 <= int(answer.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Deliverer:
    """The thread that delivers events to the subscribers from this process."""

    def __init__(self, store: Store, subscribers: Sequence[Subscriber], *,
                 poll_s: float = POLL_S, first_backoff_s: float = FIRST_BACKOFF_S) -> None:
        self.store = store
        self.subscribers = tuple(subscribers)
        self.poll_s = poll_s
        self.first_backoff_s = first_backoff_s
        self.owner = uuid.uuid4().hex  # this process, in the cursors' leases
        self._failures = {s.name: 0 for s in self.subscribers}
        self._next_try = {s.name: 0.0 for s in self.subscribers}
        self._stop = threading.Event()
        # A thread per subscriber: a receiver that holds its connection (urllib's timeout
        # bounds each read, not the answer) holds back its own events, no one else's.
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True,
                                          name=f"attest-webhook-{s.name}")
                         for s in self.subscribers]

    def start(self) -> None:
        if not self.subscribers:
            return
        with self.store.write() as tx:
            for subscriber in self.subscribers:
                cursors.subscribe(tx, subscriber.name, int(time.time()))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + TIMEOUT_S + 1
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, subscriber: Subscriber) -> None:
        while not self._stop.is_set():
            busy = False
            if time.monotonic() >= self._next_try[subscriber.name]:
                try:
                    busy = self.deliver_one(subscriber)
                # Logged, and retried at the next poll: a thread that died would stop
                # delivery for good, unnoticed (the store out of reach, above all).
                except Exception:  # noqa: BLE001
                    _log.warning("webhook %s: the store is out of reach", subscriber.name,
                                 exc_info=True)
            if not busy:
                self._stop.wait(self.poll_s)

    def deliver_one(self, subscriber: Subscriber) -> bool:
        """Deliver the subscriber's next event if this process may; whether it did."""
        with self.store.write() as tx:
            claimed = cursors.claim(tx, subscriber.name, self.owner, int(time.time()))
        if claimed is None:
            return False
        cursor, event = claimed
        if post(subscriber, event, int(time.time())):
            with self.store.write() as tx:
                cursors.advance(tx, subscriber.name, self.owner, cursor, event.id,
                                int(time.time()))
            self._failures[subscriber.name] = 0
            return True
        with self.store.write() as tx:
            cursors.release(tx, subscriber.name, self.owner)
        failures = self._failures[subscriber.name] = self._failures[subscriber.name] + 1
        wait = min(MAX_BACKOFF_S, self.first_backoff_s * 2 ** min(failures - 1, 16))
        self._next_try[subscriber.name] = time.monotonic() + wait
        _log.warning("webhook %s: event %d not taken (attempt %d), retrying in %.1fs",
                     subscriber.name, event.id, failures, wait)
        return False
