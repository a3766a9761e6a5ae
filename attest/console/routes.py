"""The console's routes under ``/ui/``: login, logout, the fleet page, its assets.

Read-only but for the session itself. Every answer carries the headers of
:data:`HEADERS` (a CSP with no inline script or style, no caching, no referrer). A
page without a valid session redirects to the login form; the token is only ever in
the login POST's body (docs/console-design.md).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from attest.console import session
from attest.console.html import Markup, join, page, tag, void
from attest.server.admin import DEFAULT_PAGE
from attest.server.bodies import RequestRefused, read_body
from attest.store import Store, hoststate, tokens
from attest.store.tokens import TokenInfo
from attest.timetext import iso

if TYPE_CHECKING:
    from attest.server.app import Service

UI = "/ui"
# A form with one token field: the token is at most tokens.MAX_TOKEN_TEXT characters,
# percent-encoded at most three times that; the rest is room for the field's name.
LOGIN_BODY_BYTES = 512
LOGOUT_BODY_BYTES = 256
FORM = "application/x-www-form-urlencoded"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATES = (hoststate.TRUSTED, hoststate.UNTRUSTED, hoststate.STALE, hoststate.REVOKED)
FILTER_SCAN_PAGES = 20
ASSETS = {"console.css": "text/css; charset=utf-8"}


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse(f"{UI}/login", status_code=303, headers=HEADERS)


def _form(body: bytes, fields: set[str]) -> dict[str, str] | None:
    """The form's fields when it has exactly ``fields``, each once, in ASCII; else None."""
    try:
        text = body.decode("ascii")
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=True,
                          max_num_fields=len(fields))
    except (UnicodeDecodeError, ValueError):
        return None
    if set(parsed) != fields or any(len(v) != 1 for v in parsed.values()):
        return None
    return {k: v[0] for k, v in parsed.items()}


def _same_origin(request: Request) -> bool:
    """Whether a POST came from the console's own pages: its ``Origin``, when the browser
    sends one, names the host the request was sent to. SameSite=Strict already keeps the
    cookie off other sites' requests; this also stops another site posting a login."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host")
    return host is not None and urlsplit(origin).netloc == host and origin != "null"


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM


def mount(app: FastAPI, service: Service, *, stale_after: int) -> None:
    """Add the console's routes to ``app``."""
    key = session.session_key(service.store.challenge_key(int(service.clock())))

    async def signed_in(request: Request) -> tuple[TokenInfo, str] | None:
        """The token a request's session names, still in force, and the cookie."""
        cookie = request.cookies.get(session.COOKIE)
        found = session.token_id(key, cookie, int(service.clock()))
        if found is None or cookie is None:
            return None
        info = await run_in_threadpool(tokens.in_force, service.store, found)
        return None if info is None else (info, cookie)

    def login_page(message: str | None, status: int = 200) -> HTMLResponse:
        form = tag("form", tag("label", "Admin token", for_="token"),
                   void("input", id="token", name="token", type="password",
                        autocomplete="off", required="required"),
                   tag("button", "Sign in", type="submit"),
                   method="post", action=f"{UI}/login")
        note = tag("p", message, role="alert", class_="error") if message else None
        hint = tag("p", "A token from ", tag("code", "attest admin token create"),
                   ". It is sent in this form's body only, never in an address.")
        return _html(page("Sign in", join([note, form, hint])), status)

    @app.get(f"{UI}/login", include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return login_page(None)

    @app.post(f"{UI}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return _html(page("Refused", tag("p", "The form is not this console's.")), 403)
        try:
            body = await read_body(request, LOGIN_BODY_BYTES)
        except RequestRefused:
            return login_page("That is not a token in force.", 401)
        fields = _form(body, {"token"}) if _is_form(request) else None
        info = None if fields is None else await run_in_threadpool(
            tokens.check, service.store, fields["token"].strip())
        if info is None:
            # Wrong, unknown, revoked or malformed: one answer for all of them.
            return login_page("That is not a token in force.", 401)
        answer = RedirectResponse(f"{UI}/", status_code=303, headers=HEADERS)
        answer.set_cookie(session.COOKIE, session.issue(key, info.id, int(service.clock())),
                          max_age=session.SESSION_S, path=UI, httponly=True,
                          samesite="strict", secure=request.url.scheme == "https")
        return answer

    @app.post(f"{UI}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        who = await signed_in(request)
        if who is None:
            return _to_login()
        if not _same_origin(request):
            return _html(page("Refused", tag("p", "The form is not this console's.")), 403)
        body = await read_body(request, LOGOUT_BODY_BYTES)
        fields = _form(body, {"csrf"}) if _is_form(request) else None
        if fields is None or not session.csrf_matches(key, who[1], fields["csrf"]):
            return _html(page("Refused", tag("p", "The form is not this session's.")), 403)
        answer = _to_login()
        answer.delete_cookie(session.COOKIE, path=UI, httponly=True, samesite="strict")
        return answer

    def nav(cookie: str, info: TokenInfo) -> Markup:
        out = tag("form", void("input", type="hidden", name="csrf",
                               value=session.csrf(key, cookie)),
                  tag("button", f"Sign out ({info.name})", type="submit"),
                  method="post", action=f"{UI}/logout")
        return tag("nav", tag("a", "Fleet", href=f"{UI}/"), out, aria_label="Console")

    @app.get(f"{UI}/", include_in_schema=False)
    async def fleet(request: Request,
                    state: str = Query("", pattern=r"^(|trusted|untrusted|stale|revoked)$"),
                    after: str = Query("", max_length=255, pattern=r"^[^\x00]*$")) -> Response:
        who = await signed_in(request)
        if who is None:
            return _to_login()
        info, cookie = who
        shown, more = await run_in_threadpool(
            _fleet_page, service.store, int(service.clock()), stale_after, state, after)
        return _html(page("Fleet", _fleet(shown, state, more), nav=nav(cookie, info)))

    @app.get(UI + "/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:  # a closed list: no path from the request reaches the disk
            return Response("not found", status_code=404, media_type="text/plain",
                            headers=HEADERS)
        data = resources.files("attest.console").joinpath("assets", name).read_bytes()
        return Response(data, media_type=media,
                        headers={**HEADERS, "Cache-Control": "max-age=300"})


def _fleet_page(store: Store, now: int, stale_after: int, state: str,
                after: str) -> tuple[list[hoststate.HostView], str | None]:
    """Up to DEFAULT_PAGE hosts after ``after`` in ``state`` (any when empty), and the
    ``after`` of the next page (None: no more). The state is computed per host at
    ``now`` (hoststate._view), so a filter reads pages until it has a page of matches,
    at most FILTER_SCAN_PAGES of them: a request's work stays bounded in a large fleet,
    and the next-page link continues from the last host read."""
    shown: list[hoststate.HostView] = []
    for _ in range(FILTER_SCAN_PAGES if state else 1):
        views = hoststate.hosts(store, now=now, stale_after=stale_after, after=after,
                                limit=DEFAULT_PAGE)
        for view in views:
            if not state or view.state == state:
                shown.append(view)
            if len(shown) == DEFAULT_PAGE:
                return shown, view.host
        if len(views) < DEFAULT_PAGE:
            return shown, None
        after = views[-1].host
    return shown, after


def _when(seconds: int | None) -> Markup:
    """A time as UTC text, with the machine-readable value for scripts."""
    if seconds is None:
        return Markup("never")
    return tag("time", iso(seconds), datetime=iso(seconds))


def _fleet(views: list[hoststate.HostView], state: str, more: str | None) -> Markup:
    filters = tag("form", tag("label", "State", for_="state"),
                  tag("select", *[Markup(f'<option value="{s}"'
                                         f'{" selected" if s == state else ""}>'
                                         f'{s or "all"}</option>') for s in ("", *STATES)],
                      id="state", name="state"),
                  tag("button", "Filter", type="submit"), method="get", action=f"{UI}/",
                  class_="filter")
    head = tag("tr", *[tag("th", h, scope="col") for h in (
        "Host", "State", "Reasons", "Last decision", "Last quote", "Last enrolled")])
    rows = []
    for v in views:
        last = v.last_decision
        decided = None if last is None else join([
            "accepted " if last["accepted"] else "denied ", _when(last["time"])])
        rows.append(tag("tr", tag("th", v.host, scope="row"),
                        tag("td", tag("span", v.state, class_=f"state state-{v.state}")),
                        tag("td", ", ".join(v.reasons)),
                        tag("td", decided or "none"),
                        tag("td", _when(v.last_accepted_at)),
                        tag("td", _when(v.last_enrolled_at)),
                        data_host=v.host, data_state=v.state))
    table = tag("table", tag("caption", f"{len(views)} hosts"
                                        + (f" ({state})" if state else "")),
                tag("thead", head), tag("tbody", *rows), id="fleet")
    empty = tag("p", "No hosts yet: enrol one with ", tag("code", "attest enroll"), ".") \
        if not views else None
    nxt = tag("a", "Next page", href=f"{UI}/?" + urlencode(
        {"after": more, **({"state": state} if state else {})})) if more else None
    return join([filters, empty, table, nxt])
