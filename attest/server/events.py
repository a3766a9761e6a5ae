"""``GET /v1/events``: the changes of trust as server-sent events, resumable by cursor.

Admin only (a bearer token, attest.server.admin): events name hosts and subjects. Each
event is one SSE message whose ``id:`` is its cursor (attest.store.events); a client
that reconnects sends it back as ``Last-Event-ID`` (which takes precedence over
``after``, the URL's starting cursor) and gets every event after it, once.

Delivery polls the events table, on SQLite and PostgreSQL alike, rather than LISTEN/
NOTIFY: the table is the source of truth either way (a notification lost while a replica
reconnects would still need a read of the table), it works on SQLite, and a stream holds
no database connection between polls. The cost is up to one poll interval of latency.

A stream stays open for at most ``timeout`` seconds (default and most
:data:`MAX_STREAM_S`), then ends: the client reconnects with its cursor, which bounds what
one connection holds and lets a load balancer move it. ``timeout=0`` answers the events
already there and ends (a catch-up read). While idle, a comment line every
:data:`HEARTBEAT_S` keeps proxies from closing the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from attest.server import schema
from attest.server.admin import API, MAX_INT, admin
from attest.server.bodies import RequestRefused
from attest.store import events
from attest.store.events import Event

if TYPE_CHECKING:
    from attest.server.app import Service

MAX_STREAM_S = 300
POLL_S = 1.0
HEARTBEAT_S = 15.0
BATCH = 100
MEDIA = "text/event-stream"
_CURSOR_DIGITS = 19  # MAX_INT has 19 digits
_log = logging.getLogger(__name__)


def message(event: Event) -> str:
    """One SSE message: ``data`` is single-line JSON (json.dumps escapes newlines)."""
    data = json.dumps(event.to_json(), separators=(",", ":"), sort_keys=True)
    # The kind is ASCII (record_event); anything else that is not a token is left out.
    kind = event.kind if event.kind.isascii() and event.kind.isidentifier() else "event"
    return f"id: {event.id}\nevent: {kind}\ndata: {data}\n\n"


def cursor_from(header: str | None, after: int) -> int:
    """The cursor to resume after: ``Last-Event-ID`` when sent, else ``after``."""
    if header is None:
        return after
    text = header.strip()
    if not text.isdigit() or not text.isascii() or len(text) > _CURSOR_DIGITS \
            or int(text) > MAX_INT:
        raise RequestRefused(400, "invalid_request",
                             "Last-Event-ID must be an event id: a decimal integer")
    return int(text)


class Batch(NamedTuple):
    """One read of a stream's source: the events to send, in order; where the next read
    starts; whether the read was full (more may be waiting: read again at once)."""

    events: list[Event]
    cursor: int
    full: bool


def stream_response(request: Request, start: int, first: list[Event],
                    fetch: Callable[[int], list[Event]], timeout: float, *,
                    allowed: Callable[[], Awaitable[bool]] | None = None
                    ) -> StreamingResponse:
    """The SSE answer: ``first`` (the events after ``start``, read before answering so a
    store out of reach is a 503), then those ``fetch(cursor)`` finds, polled, for at most
    ``timeout`` seconds. Shared by /v1/events and each host's feed (attest.server.hostfeed).
    A read of events resumes after the last one sent: its id is the cursor."""

    def framed(cursor: int, found: list[Event]) -> Batch:
        return Batch(found, found[-1].id if found else cursor, len(found) == BATCH)

    def read(cursor: int) -> Batch:
        return framed(cursor, fetch(cursor))

    return batches_response(request, framed(start, first), read, timeout, allowed=allowed)


def batches_response(request: Request, first: Batch, fetch: Callable[[int], Batch],
                     timeout: float, *, allowed: Callable[[], Awaitable[bool]] | None = None,
                     backlog_s: float | None = None) -> StreamingResponse:
    """The SSE answer over any source read in :class:`Batch` es: ``first`` (read before
    answering), then what ``fetch(cursor)`` finds (blocking, run in a thread), polled
    while idle, for at most ``timeout`` seconds. A full batch is followed by the next read
    at once; ``backlog_s``, when given, bounds how far past the deadline such a backlog
    keeps the stream (a source as long as the audit log: the client resumes), else a
    backlog is read to its end. ``allowed``, when given, is asked before each read after
    the first: the stream ends once it says no (the console's session: its token revoked
    or its cookie expired)."""

    async def body() -> AsyncIterator[str]:
        batch = first
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        yield "retry: 1000\n\n"
        while True:
            for event in batch.events:
                yield message(event)
            if batch.events:
                quiet_since = time.monotonic()
            if not batch.full:
                if time.monotonic() >= deadline or await request.is_disconnected():
                    return
                if time.monotonic() - quiet_since >= HEARTBEAT_S:
                    yield ": heartbeat\n\n"
                    quiet_since = time.monotonic()
                await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
            elif backlog_s is not None and time.monotonic() >= deadline + backlog_s:
                return  # a backlog longer than the stream's time: the client resumes
            try:
                if allowed is not None and not await allowed():
                    return
                batch = await run_in_threadpool(fetch, batch.cursor)
            except Exception:  # noqa: BLE001 - the store went away mid-stream
                # End the stream; the client reconnects from its cursor and then
                # gets the 503 (or its events) in the open.
                _log.warning("event stream ended: the store is out of reach",
                             exc_info=True)
                return

    return StreamingResponse(body(), media_type=MEDIA,
                             headers={"Cache-Control": "no-store",
                                      "X-Accel-Buffering": "no"})


def mount(app: FastAPI, service: Service) -> None:
    """Add ``GET /v1/events`` to ``app``."""

    def batch(cursor: int) -> list[Event]:
        with service.store.read() as tx:
            return events.after(tx, cursor, BATCH)

    @app.get(f"{API}/events", tags=["admin"], response_class=Response,
             responses={200: {"description": "The events after the cursor, as server-sent "
                              "events (id: the cursor)", "content": {MEDIA: {}}},
                        **schema.SECURED})
    async def stream(request: Request, after: int = Query(0, ge=0, le=MAX_INT),
                     timeout: int = Query(MAX_STREAM_S, ge=0, le=MAX_STREAM_S)) -> Response:
        """Revocations and host state changes after ``after`` (or ``Last-Event-ID``), in
        the order they committed, as they happen, for at most ``timeout`` seconds."""
        who = await admin(request, service)
        if isinstance(who, JSONResponse):
            return who
        start = cursor_from(request.headers.get("last-event-id"), after)
        # The first batch before answering: a store out of reach is a 503, not a stream
        # that ends at once (attest.server.app maps StoreUnavailable).
        first = await run_in_threadpool(batch, start)
        return stream_response(request, start, first, batch, timeout)
