"""The console's routes under ``/ui/``: login, logout, the event stream, the assets,
and each page's (attest.console.pages).

Read-only but for the session itself and the revocation an admin confirms on the
lineage page. Every answer carries the headers of :data:`attest.console.base.HEADERS`
(a CSP with no inline script or style, no caching, no referrer). A page without a valid
session redirects to the login form; the token is only ever in the login POST's body
(docs/console-design.md).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from attest.console import session
from attest.console.base import (
    HEADERS,
    UI,
    Console,
    assets,
    form_fields,
    html,
    is_form,
    same_origin,
    to_login,
)
from attest.console.html import join, page, tag, void
from attest.console.pages import audit, decisions, fleet, host, lineage
from attest.server import events as event_stream
from attest.server.admin import MAX_INT
from attest.server.bodies import RequestRefused, read_body
from attest.store import events, tokens
from attest.store.events import Event

if TYPE_CHECKING:
    from attest.server.app import Service

# A form with one token field: the token is at most tokens.MAX_TOKEN_TEXT characters,
# percent-encoded at most three times that; the rest is room for the field's name.
LOGIN_BODY_BYTES = 512
LOGOUT_BODY_BYTES = 256
# The page modules, each adding its routes (attest.console.pages).
PAGES = (fleet, host, decisions, lineage, audit)


def mount(app: FastAPI, service: Service, *, stale_after: int) -> None:
    """Add the console's routes to ``app``."""
    console = Console(service, stale_after=stale_after)
    served = assets()

    def login_page(message: str | None, status: int = 200) -> HTMLResponse:
        form = tag("form", tag("label", "Admin token", for_="token"),
                   void("input", id="token", name="token", type="password",
                        autocomplete="off", required="required"),
                   tag("button", "Sign in", type="submit"),
                   method="post", action=f"{UI}/login")
        note = tag("p", message, role="alert", class_="error") if message else None
        hint = tag("p", "A token from ", tag("code", "attest admin token create"),
                   ". It is sent in this form's body only, never in an address.")
        return html(page("Sign in", join([note, form, hint])), status)

    @app.get(f"{UI}/login", include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return login_page(None)

    @app.post(f"{UI}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not same_origin(request):
            return html(page("Refused", tag("p", "The form is not this console's.")), 403)
        try:
            body = await read_body(request, LOGIN_BODY_BYTES)
        except RequestRefused:
            return login_page("That is not a token in force.", 401)
        fields = form_fields(body, {"token"}) if is_form(request) else None
        info = None if fields is None else await run_in_threadpool(
            tokens.check, service.store, fields["token"].strip())
        if info is None:
            # Wrong, unknown, revoked or malformed: one answer for all of them.
            return login_page("That is not a token in force.", 401)
        answer = RedirectResponse(f"{UI}/", status_code=303, headers=HEADERS)
        answer.set_cookie(session.COOKIE, session.issue(console.key, info.id, console.now()),
                          max_age=session.SESSION_S, path=UI, httponly=True,
                          samesite="strict", secure=request.url.scheme == "https")
        return answer

    @app.post(f"{UI}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        if await console.own_form(request, who, {"csrf"}, LOGOUT_BODY_BYTES) is None:
            return html(page("Refused", tag("p", "The form is not this session's.")), 403)
        answer = to_login()
        answer.delete_cookie(session.COOKIE, path=UI, httponly=True, samesite="strict")
        return answer

    def batch(cursor: int) -> list[Event]:
        with service.store.read() as tx:
            return events.after(tx, cursor, event_stream.BATCH)

    @app.get(f"{UI}/events", include_in_schema=False)
    async def stream(request: Request, after: int = Query(0, ge=0, le=MAX_INT),
                     timeout: int = Query(event_stream.MAX_STREAM_S, ge=0,
                                          le=event_stream.MAX_STREAM_S)) -> Response:
        """``GET /v1/events`` under the session cookie: the browser's EventSource cannot
        send a bearer header. The same messages, cursor and bounds; a page passes the
        cursor it was rendered at (:meth:`Console.cursor`) as ``after``."""
        who = await console.require(request)
        if isinstance(who, Response):
            return Response("sign in first", status_code=401, media_type="text/plain",
                            headers=HEADERS)
        start = event_stream.cursor_from(request.headers.get("last-event-id"), after)
        first = await run_in_threadpool(batch, start)

        async def signed_in() -> bool:
            # The whole session before each read, as on every page: a revoked token or a
            # session past its expiry ends the stream at the next poll.
            return not isinstance(await console.require(request), Response)

        answer = event_stream.stream_response(request, start, first, batch, timeout,
                                              allowed=signed_in)
        answer.headers.update({k: v for k, v in HEADERS.items() if k != "Cache-Control"})
        return answer

    @app.get(UI + "/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media = served.get(name)
        if media is None:  # a closed list: no path from the request reaches the disk
            return Response("not found", status_code=404, media_type="text/plain",
                            headers=HEADERS)
        data = resources.files("attest.console").joinpath("assets", name).read_bytes()
        return Response(data, media_type=media,
                        headers={**HEADERS, "Cache-Control": "max-age=300"})

    for module in PAGES:
        module.mount(app, console)
