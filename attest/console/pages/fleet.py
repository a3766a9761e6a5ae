"""``/ui/``: the fleet, one row a host with its trust state, its AK and EK; filter by
state, paged. fleet.js (attest/console/assets) keeps the rows' states live from
/ui/events, starting at the cursor the page was rendered at (``data-cursor``)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from attest.console.base import UI, Console
from attest.console.html import Markup, join, tag, void
from attest.server.admin import DEFAULT_PAGE
from attest.store import Store, hoststate, identities
from attest.store.identities import IdentitySummary
from attest.timetext import iso

STATES = (hoststate.TRUSTED, hoststate.UNTRUSTED, hoststate.STALE, hoststate.REVOKED)
FILTER_SCAN_PAGES = 20


def mount(app: FastAPI, console: Console) -> None:
    @app.get(f"{UI}/", include_in_schema=False)
    async def fleet(request: Request,
                    state: str = Query("", pattern=r"^(|trusted|untrusted|stale|revoked)$"),
                    after: str = Query("", max_length=255, pattern=r"^[^\x00]*$")) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        # The cursor first: an event committed while the page is read is streamed again
        # (fleet.js applies it idempotently), never missed.
        cursor = await run_in_threadpool(console.cursor)
        shown, more = await run_in_threadpool(
            fleet_page, console.store, console.now(), console.stale_after, state, after)
        ids = await run_in_threadpool(identity_page, console.store, shown)
        return console.render(who, "Fleet", _fleet(shown, ids, state, more, cursor),
                              section="Fleet", scripts=("fleet.js",))


def identity_page(store: Store, views: list[hoststate.HostView]
                  ) -> dict[str, IdentitySummary]:
    """The AK and EK of a page of hosts: one read, whatever the page's size."""
    with store.read() as tx:
        return identities.summaries(tx, [v.host for v in views])


def host_href(host: str) -> str:
    """The host page's address: the id percent-encoded whole (a '/' or '?' in it is data)."""
    return f"{UI}/hosts/{quote(host, safe='')}"


def short(value: str, state: str | None) -> Markup:
    """A long hex name cut to 12 characters, the whole in its title; ``state``: the
    revocation's reason when revoked, said in words."""
    cut = value[:12] + "\u2026" if len(value) > 12 else value
    shown = tag("code", cut, title=value)
    return join([shown, " ", tag("span", "revoked", class_="state state-revoked",
                                 title=state)]) if state is not None else shown


def identity(found: IdentitySummary | None) -> Markup:
    if found is None:
        return Markup("not enrolled")
    ak = join(["AK ", short(found.ak_name, found.ak_revoked)])
    more = f" (+{found.aks - 1} older)" if found.aks > 1 else None
    ek = join(["EK ", short(found.ek, found.ek_revoked)]) if found.ek else \
        Markup("EK not recorded")
    return join([tag("span", ak, more, class_="ak"), void("br"), tag("span", ek, class_="ek")])


def fleet_page(store: Store, now: int, stale_after: int, state: str,
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


def when(seconds: int | None) -> Markup:
    """A time as UTC text, with the machine-readable value for scripts."""
    if seconds is None:
        return Markup("never")
    return tag("time", iso(seconds), datetime=iso(seconds))


def _fleet(views: list[hoststate.HostView], ids: dict[str, IdentitySummary], state: str,
           more: str | None, cursor: int) -> Markup:
    filters = tag("form", tag("label", "State", for_="state"),
                  tag("select", *[Markup(f'<option value="{s}"'
                                         f'{" selected" if s == state else ""}>'
                                         f'{s or "all"}</option>') for s in ("", *STATES)],
                      id="state", name="state"),
                  tag("button", "Filter", type="submit"), method="get", action=f"{UI}/",
                  class_="filter")
    head = tag("tr", *[tag("th", h, scope="col") for h in (
        "Host", "State", "Reasons", "Last decision", "Last quote", "Last enrolled",
        "AK and EK")])
    rows = []
    for v in views:
        last = v.last_decision
        decided = None if last is None else join([
            "accepted " if last["accepted"] else "denied ", when(last["time"])])
        rows.append(tag("tr", tag("th", tag("a", v.host, href=host_href(v.host)), scope="row"),
                        tag("td", tag("span", v.state, class_=f"state state-{v.state}")),
                        tag("td", ", ".join(v.reasons), class_="reasons"),
                        tag("td", decided or "none"),
                        tag("td", when(v.last_accepted_at)),
                        tag("td", when(v.last_enrolled_at)),
                        tag("td", identity(ids.get(v.host)), class_="identity"),
                        data_host=v.host, data_state=v.state))
    table = tag("table", tag("caption", f"{len(views)} hosts"
                                        + (f" ({state})" if state else "")),
                tag("thead", head), tag("tbody", *rows), id="fleet",
                data_cursor=str(cursor))
    # Said by fleet.js once its stream is open; without JavaScript the page stays as read.
    live = tag("p", "Not live: the states are as of this page's loading.", id="live",
               aria_live="polite", class_="live")
    empty = tag("p", "No hosts yet: enrol one with ", tag("code", "attest enroll"), ".") \
        if not views else None
    nxt = tag("a", "Next page", href=f"{UI}/?" + urlencode(
        {"after": more, **({"state": state} if state else {})})) if more else None
    return join([filters, live, empty, table, nxt])
