"""What every console page shares: the session check, the headers, the page frame.

:class:`Console` is made once per service (attest.console.routes.mount) and handed to
each page module's ``mount``; a page calls :meth:`Console.require` first and answers the
redirect to the login form when it returns a response instead of a session.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from attest.console import session
from attest.console.html import Markup, join, page, tag, void
from attest.server.bodies import RequestRefused, read_body
from attest.store import events, tokens
from attest.store.tokens import TokenInfo

if TYPE_CHECKING:
    from attest.server.app import Service

UI = "/ui"
FORM = "application/x-www-form-urlencoded"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors for browsers too old to read it: no page of the console in a frame.
    "X-Frame-Options": "DENY",
    # Never a console address to another site. Not no-referrer: with it Chromium sends
    # "Origin: null" on the console's own form POSTs, which same_origin must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# The pages the navigation names, in its order: (path under /ui, label).
PAGES = (("/", "Fleet"), ("/decisions", "Decisions"), ("/lineage", "Lineage"),
         ("/audit", "Audit"))
_MEDIA = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml"}


def assets() -> dict[str, str]:
    """The files under attest/console/assets the service serves, with their media types:
    a closed list read from the package once, so no path from a request reaches the disk."""
    found: dict[str, str] = {}
    for entry in resources.files("attest.console").joinpath("assets").iterdir():
        name = entry.name
        stem, dot, ext = name.rpartition(".")
        media = _MEDIA.get(dot + ext)
        if media and stem and stem.replace("-", "").isalnum() and stem.isascii():
            found[name] = media
    return found


class Session(NamedTuple):
    info: TokenInfo  # the admin token the session was made with, still in force
    cookie: str


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def is_console(path: str) -> bool:
    return path == UI or path.startswith(UI + "/")


def error_page(status: int, message: str) -> HTMLResponse:
    """A refusal on a console address as a page (the service's error handlers call this
    for /ui paths): the status and the service's plain message, escaped, and a way back."""
    body = join([tag("p", message, role="alert", class_="error"),
                 tag("p", tag("a", "Back to the fleet", href=f"{UI}/"))])
    return html(page(f"Error {status}", body), status)


def to_login() -> RedirectResponse:
    return RedirectResponse(f"{UI}/login", status_code=303, headers=HEADERS)


def form_fields(body: bytes, fields: set[str]) -> dict[str, str] | None:
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


def same_origin(request: Request) -> bool:
    """Whether a POST came from the console's own pages: its ``Origin``, when the browser
    sends one, names the host the request was sent to. SameSite=Strict already keeps the
    cookie off other sites' requests; this also stops another site posting a login."""
    # A browser says where a request came from in Sec-Fetch-Site too, even where it (or
    # an extension) leaves Origin out: another site's form, or a sibling subdomain's.
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host")
    return host is not None and urlsplit(origin).netloc == host and origin != "null"


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM


class Console:
    """The console's state on one service: its session key, the service, its settings."""

    def __init__(self, service: Service, *, stale_after: int) -> None:
        self.service = service
        self.store = service.store
        self.stale_after = stale_after
        self.key = session.session_key(service.store.challenge_key(int(service.clock())))

    def now(self) -> int:
        return int(self.service.clock())

    def cursor(self) -> int:
        """The newest event's id: a page rendered now shows the state as of it, and its
        script asks /ui/events for what comes after (blocking: call in a thread)."""
        with self.store.read() as tx:
            return events.last(tx)

    async def require(self, request: Request) -> Session | Response:
        """The request's session (its token still in force), or the redirect to log in."""
        cookie = request.cookies.get(session.COOKIE)
        found = session.token_id(self.key, cookie, self.now())
        if found is None or cookie is None:
            return to_login()
        info = await run_in_threadpool(tokens.in_force, self.store, found)
        return to_login() if info is None else Session(info, cookie)

    def csrf(self, who: Session) -> str:
        return session.csrf(self.key, who.cookie)

    def csrf_field(self, who: Session) -> Markup:
        """The hidden field a state-changing form of this session carries."""
        return void("input", type="hidden", name="csrf", value=self.csrf(who))

    async def own_form(self, request: Request, who: Session, fields: set[str],
                       limit: int) -> dict[str, str] | None:
        """The fields of a POST that is ``who``'s own form: from this origin, a body of at
        most ``limit`` bytes, form-encoded with exactly ``fields`` (``csrf`` among them)
        and its CSRF token; None for anything else (nothing to act on)."""
        if not same_origin(request) or not is_form(request):
            return None
        try:
            body = await read_body(request, limit)
        except RequestRefused:
            return None  # too large, or a broken body
        found = form_fields(body, fields)
        if found is None or not session.csrf_matches(self.key, who.cookie, found["csrf"]):
            return None
        return found

    def nav(self, who: Session, current: str) -> Markup:
        links = [tag("a", label, href=f"{UI}{path}",
                     aria_current="page" if label == current else None)
                 for path, label in PAGES]
        out = tag("form", self.csrf_field(who),
                  tag("button", f"Sign out ({who.info.name})", type="submit"),
                  method="post", action=f"{UI}/logout")
        return tag("nav", *links, out, aria_label="Console")

    def render(self, who: Session, title: str, body: Markup, *, section: str,
               scripts: tuple[str, ...] = (), status: int = 200) -> HTMLResponse:
        """A whole page for a signed-in operator: the navigation (``section`` marked as
        the current page) and the page's scripts from the assets."""
        return html(page(title, body, nav=self.nav(who, section), scripts=scripts), status)
