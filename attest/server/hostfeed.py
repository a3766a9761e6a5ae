"""Each host's own event feed: ``GET /v1/hosts/{host}/events`` under a watch token.

A host's agent must learn within a second that what it authorized was cut (attest run
--supervise stops the command), but hosts hold no administrator's token, so they can't
read /v1/events (which names every host). Each accepted report's answer carries a watch
credential instead (:meth:`WatchCredentials.issue`, attest.server.watchtoken): a bearer
token bound to the report's host, for :func:`lifetime` seconds. It opens that host's feed
and nothing else: the same server-sent events as /v1/events (attest.server.events), the
same cursors, only the events whose ``host`` is this one (attest.store.eventhosts says
which revocations touch a host and what they cut there).

A token of another host, expired, altered, minted under another deployment's key, or an
administrator's token, is a 401. A stream ends when its token expires: the agent
reconnects with its cursor and the newest token (each accepted report brings one), so a
host whose reports stop being accepted loses its feed within one lifetime.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import JSONResponse, Response

from attest.server import schema, watchtoken
from attest.server.admin import API, MAX_INT, unauthorized
from attest.server.bodies import RequestRefused
from attest.server.events import BATCH, MAX_STREAM_S, MEDIA, cursor_from, stream_response
from attest.server.feedslots import FeedSlots
from attest.store import events, servicekeys
from attest.store.events import Event
from attest.store.schema import MAX_HOST
from attest.store.store import Store

if TYPE_CHECKING:
    from attest.server.app import Service

WATCH_KEY = "watch-token-mac-v1"
# Without freshness.report_max_age, a token lives this long; with it, twice the age (so a
# host that turned stale still reads the event saying so), within these bounds.
DEFAULT_LIFETIME_S = 300
MIN_LIFETIME_S = 60
MAX_LIFETIME_S = 3600
FEED_RETRY_S = 5  # Retry-After of a host holding all its streams already
NEWEST_HEADER = "Attest-Newest-Event"  # with a 409: the newest event id the store holds

WATCH: dict[str, Any] = {
    "type": "object", "required": ["token", "expires_at", "events", "after"],
    "additionalProperties": False,
    "description": "The host's credential for its own event feed (accepted reports only).",
    "properties": {
        "token": {"type": "string", "description": "Opaque: Authorization: Bearer <token>"},
        "expires_at": {"type": "integer", "description": "Unix seconds (exclusive)"},
        "events": {"type": "string", "description": "The feed's path"},
        "after": {"type": "integer", "description": "The stream's newest event id when "
                  "this answer was made: a watcher's first cursor (it acts on what comes "
                  "after, not on the host's history)"},
    },
}
_SECURED: dict[int | str, dict[str, Any]] = {
    401: {"description": "No watch token of this host in force",
          "content": {"application/json": {"schema": schema.ERROR}}},
    409: {"description": "The cursor is past the newest event this verifier holds (a "
                         "new or restored store): what was cut since is unknown. The "
                         "header Attest-Newest-Event names the newest event id.",
          "content": {"application/json": {"schema": schema.ERROR}}},
    429: {"description": "This host holds as many open streams of its feed as allowed",
          "content": {"application/json": {"schema": schema.ERROR}}}}


def lifetime(report_max_age: int | None) -> int:
    """How long a watch token lives under a policy's ``freshness.report_max_age``."""
    if report_max_age is None:
        return DEFAULT_LIFETIME_S
    return min(MAX_LIFETIME_S, max(MIN_LIFETIME_S, 2 * report_max_age))


def feed_path(host: str) -> str:
    return f"{API}/hosts/{urllib.parse.quote(host, safe='')}/events"


class WatchCredentials:
    """Mints and checks watch tokens under the deployment's watch key, which the replicas
    on one database share (created by the first to mint, read once per process)."""

    def __init__(self, store: Store, clock: Callable[[], float], lifetime_s: int) -> None:
        self._store = store
        self._clock = clock
        self._lifetime = lifetime_s
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def issue(self, host: str) -> dict[str, Any]:
        """The ``watch`` member of an accepted report's answer, for ``host``."""
        now = int(self._clock())
        expires = now + self._lifetime
        token = watchtoken.mint(self._ensure(now), host, expires)
        with self._store.read() as tx:
            newest = events.last(tx)
        return {"token": token, "expires_at": expires, "events": feed_path(host),
                "after": newest}

    def check(self, token: str, host: str) -> bool:
        """Whether ``token`` opens ``host``'s feed now. Reads the store only once per
        process (the key); no token was ever valid before the key exists."""
        key = self._known()
        if key is None:
            return False
        found = watchtoken.read(key, token)
        return (found is not None and found.host == host
                and int(self._clock()) < found.expires_at)

    def expires_at(self, token: str) -> int:
        """The expiry of a token :meth:`check` accepted."""
        key = self._known()
        found = None if key is None else watchtoken.read(key, token)
        if found is None:
            raise ValueError("not a watch token")
        return found.expires_at

    def _known(self) -> bytes | None:
        if self._key is None:
            with self._lock, self._store.read() as tx:
                if self._key is None:
                    self._key = servicekeys.find(tx, WATCH_KEY, watchtoken.KEY_BYTES)
        return self._key

    def _ensure(self, now: int) -> bytes:
        key = self._known()
        if key is not None:
            return key
        with self._lock:
            if self._key is None:
                with self._store.write() as tx:
                    self._key = servicekeys.ensure(tx, WATCH_KEY, watchtoken.KEY_BYTES, now)
            return self._key


class _HostId(Convertor[str]):
    """A feed's host id in the path: anything, '/' and control characters included, so
    that the Path check answers a malformed one (422) rather than no route (404)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


_HOST_CONVERTOR = "attest_host_id"
register_url_convertor(_HOST_CONVERTOR, _HostId())


def mount(app: FastAPI, service: Service, credentials: WatchCredentials) -> None:
    """Add ``GET /v1/hosts/{host}/events`` to ``app``."""
    slots = app.state.feed_slots = FeedSlots()

    # {host:hostid}: a host id may hold '/' (the policy's and enrollment's ids do), which
    # the URL spells %2F and the router sees decoded; any character but a control one.
    @app.get(f"{API}/hosts/{{host:{_HOST_CONVERTOR}}}/events", tags=["continuous"],
             response_class=Response,
             responses={200: {"description": "This host's events after the cursor, as "
                              "server-sent events (id: the cursor)", "content": {MEDIA: {}}},
                        **_SECURED})
    async def feed(request: Request,
                   host: str = Path(..., min_length=1, max_length=MAX_HOST,
                                    pattern=r"^[^\x00-\x1f\x7f]+$"),
                   after: int = Query(0, ge=0, le=MAX_INT),
                   timeout: int = Query(MAX_STREAM_S, ge=0, le=MAX_STREAM_S)) -> Response:
        """The events concerning this host (its trust state changes; revocations of it,
        its EK or AK, its artifacts, with the jtis they cut) after ``after`` (or
        ``Last-Event-ID``), for at most ``timeout`` seconds and never past the token's
        expiry. Authorization: Bearer <the watch token of an accepted report of it>."""
        token = _bearer(request)
        if token is None or not await run_in_threadpool(credentials.check, token, host):
            return unauthorized("this feed needs a watch token of this host, in force")
        start = cursor_from(request.headers.get("last-event-id"), after)

        def batch(cursor: int) -> list[Event]:
            with service.store.read() as tx:
                return events.after(tx, cursor, BATCH, host=host)

        def opening() -> tuple[int, list[Event]]:
            with service.store.read() as tx:
                return events.last(tx), events.after(tx, start, BATCH, host=host)

        newest, first = await run_in_threadpool(opening)
        if start > newest:
            # A cursor this store never handed out (a new or restored store): answered
            # as such, or the watcher would wait past every event up to its cursor.
            return _cursor_unknown(start, newest)
        left = credentials.expires_at(token) - service.clock()
        lasting = max(0.0, min(timeout, left))
        slot = slots.take(host, lasting)  # a bound on the streams one token holds
        if slot is None:
            return _too_many(slots.per_host)
        response = stream_response(request, start, first, batch, lasting)
        response.body_iterator = _releasing(response.body_iterator,
                                            lambda: slots.give(host, slot))
        return response


async def _releasing(body: AsyncIterable[Any], release: Callable[[], None]
                     ) -> AsyncIterator[Any]:
    """``body``, then ``release()`` once it ended however (a body never started gives
    its slot back at the slot's deadline: attest.server.feedslots)."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        release()


def _cursor_unknown(cursor: int, newest: int) -> JSONResponse:
    refusal = RequestRefused(409, "cursor_unknown", f"event {cursor} is past this "
                             f"verifier's newest ({newest}): a new or restored store; "
                             f"what was cut since is unknown")
    return JSONResponse(refusal.to_json(), status_code=409,
                        headers={NEWEST_HEADER: str(newest)})


def _too_many(most: int) -> JSONResponse:
    refusal = RequestRefused(429, "rate_limited", f"this host already holds {most} "
                             "streams of its feed open; retry once one has ended")
    return JSONResponse(refusal.to_json(), status_code=429,
                        headers={"Retry-After": str(FEED_RETRY_S)})


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
