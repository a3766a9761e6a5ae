"""``/ui/decisions``: the newest decisions, live, and the decisions per minute over the
last hour and day (attest.console.charts), read from the audit log in the shared store
(attest.console.decisionlog), so every replica shows every replica's decisions.

``/ui/decisions/stream`` is the live part: the decisions after the page's position as
server-sent events under the session cookie, with the bounds of ``/v1/events``
(attest.server.events: at most MAX_STREAM_S a connection, a heartbeat while idle, a poll
a second, BATCH entries a read); ``Last-Event-ID`` resumes.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from attest.console import charts, decisionlog
from attest.console.base import HEADERS, UI, Console
from attest.console.decisionlog import LoggedDecision
from attest.console.html import Markup, join, tag
from attest.console.pages.fleet import when
from attest.server import events as event_stream
from attest.server.admin import MAX_INT
from attest.server.bodies import RequestRefused

PAGE = 100
HOUR_MINUTES = 60
DAY_MINUTES = 1440
DAY_BAR_MINUTES = 15


def mount(app: FastAPI, console: Console) -> None:
    store = console.store
    counter = decisionlog.DecisionCounter(store, DAY_MINUTES)

    @app.get(f"{UI}/decisions", include_in_schema=False)
    async def decisions(request: Request,
                        by: str = Query("result", pattern=r"^(result|reason)$")) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        shown, cursor = await run_in_threadpool(decisionlog.newest, store, PAGE)
        now = console.now()
        day = await run_in_threadpool(counter.tally, now)
        return console.render(who, "Decisions", _page(shown, cursor, day, by, now),
                              section="Decisions", scripts=("decisions.js",))

    @app.get(f"{UI}/decisions/stream", include_in_schema=False)
    async def stream(request: Request, after: int = Query(0, ge=0, le=MAX_INT),
                     timeout: int = Query(event_stream.MAX_STREAM_S, ge=0,
                                          le=event_stream.MAX_STREAM_S)) -> Response:
        """The decisions at positions past ``after`` (or ``Last-Event-ID``) as they are
        logged, for at most ``timeout`` seconds (0: those already there, then end)."""
        who = await console.require(request)
        if isinstance(who, Response):
            return Response("sign in first", status_code=401, media_type="text/plain",
                            headers=HEADERS)
        try:
            start = event_stream.cursor_from(request.headers.get("last-event-id"), after)
        except RequestRefused as refused:
            return Response(refused.message, status_code=400, media_type="text/plain",
                            headers=HEADERS)
        # The first read before answering: a store out of reach is an error status, not a
        # stream that ends at once.
        first = await run_in_threadpool(batch, start)

        async def signed_in() -> bool:
            return not isinstance(await console.require(request), Response)

        # The decision log is as long as the audit log: a backlog keeps a connection
        # open at most a poll past its time, then the client resumes from its position.
        answer = event_stream.batches_response(request, first, batch, timeout,
                                               allowed=signed_in,
                                               backlog_s=event_stream.POLL_S)
        answer.headers.update(HEADERS)
        return answer

    def batch(position: int) -> event_stream.Batch:
        """The decisions past ``position``. Unlike /v1/events the next read does not start
        at the last message's id: entries that are not decisions (enrolments, state
        changes) are read past too, so a run of them never holds the stream in place."""
        found, after_read, full = decisionlog.after(store, position, event_stream.BATCH)
        return event_stream.Batch([d.event() for d in found], after_read, full)


def _row(d: LoggedDecision) -> Markup:
    return tag("tr", tag("td", when(d.time)),
               tag("td", tag("span", d.result, class_=f"result result-{d.result}")),
               tag("td", ", ".join(d.reasons) or "none"),
               tag("td", d.subject or "none"),
               tag("td", d.host or "none"),
               data_result=d.result, data_position=str(d.position))


def _table(shown: list[LoggedDecision], cursor: int) -> Markup:
    head = tag("tr", *[tag("th", h, scope="col")
                       for h in ("Time (UTC)", "Result", "Reasons", "Subject", "Host")])
    caption = (f"The newest {len(shown)} decisions, newest first" if shown
               else "No decisions yet")
    return tag("table", tag("caption", caption), tag("thead", head),
               tag("tbody", *[_row(d) for d in shown]),
               id="decisions", data_cursor=str(cursor))


def _switch(by: str) -> Markup:
    links = [tag("a", f"by {b}", href=f"{UI}/decisions?" + urlencode({"by": b}),
                 aria_current="true" if b == by else None) for b in charts.BY]
    refresh = tag("a", "refresh the charts", href=f"{UI}/decisions?" + urlencode({"by": by}))
    return tag("p", "Charts: ", links[0], " | ", links[1], " | ", refresh, class_="switch")


def _page(shown: list[LoggedDecision], cursor: int, day: decisionlog.Tally, by: str,
          now: int) -> Markup:
    live = tag("p", "Not live: the page's script has not started (new decisions show "
                    "on reload).", id="live", aria_live="polite")
    hour = day.recent(HOUR_MINUTES)
    counted = join(["Counted at ", when(now), "; the charts do not update live."])
    if not day.complete:
        counted = join([counted, " The log held too many entries to count the whole day "
                        f"at once (at most {decisionlog.MAX_COUNTED}): minutes before ",
                        when(day.counted_from), " are counted only in part, or not at all."])
    hour_fig = charts.figure("chart-hour", "Decisions per minute, the last hour", hour, by,
                             per=1, tick_every=10, table_per=1, note="One bar a minute.")
    day_fig = charts.figure(
        "chart-day", "Decisions per minute, the last day", day, by, per=DAY_BAR_MINUTES,
        tick_every=12, table_per=60,
        note=f"One bar per {DAY_BAR_MINUTES} minutes, its height the mean per minute "
             "(1440 one-minute bars would be too thin to read); the table counts per hour.")
    reason_note = ("By reason counts denials only, a denial with several reasons under "
                   "each; the five most frequent reasons, the rest as \u201cother\u201d."
                   if by == "reason" else None)
    return join([live, _table(shown, cursor),
                 tag("section", tag("h2", "Decisions per minute", id="charts-title"),
                     _switch(by), tag("p", counted),
                     tag("p", reason_note) if reason_note else None,
                     hour_fig, day_fig, aria_labelledby="charts-title")])
