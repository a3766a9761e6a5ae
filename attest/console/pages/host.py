"""``/ui/hosts/{host}``: one host: its trust (the fleet's view and its reports' state),
its AK and EK, its recent audit entries, the runtime measurements of the report that
last changed its state with the reference value that allowed each (or why none did),
and the revocations that concern it. A host the store does not know is a 404 page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from attest.console import decisionlog
from attest.console.base import UI, Console
from attest.console.html import Markup, join, tag
from attest.console.measurements import Appraised, explain, replayed
from attest.console.pages.fleet import short, when
from attest.server.reports import NO_AGE
from attest.store import hoststate, hosttrust, identities
from attest.store.hostreports import StoredReport
from attest.store.hostreports import last as last_report
from attest.store.hostrevocations import HostRevocation, for_host
from attest.store.hoststate import HostView
from attest.store.hosttrust import TrustView
from attest.store.identities import IdentitySummary

# The audit entries a page reads, newest first: entries carry no host index, so the page
# looks through this many of the latest and shows the host's among them.
SCAN_ENTRIES = 2000
MAX_DECISIONS = 25


@dataclass(frozen=True)
class HostFacts:
    view: HostView | None
    trust: TrustView
    identity: IdentitySummary | None
    revocations: list[HostRevocation]
    report: StoredReport | None
    appraised: Appraised | None
    entries: list[dict[str, Any]]
    scanned: int


def mount(app: FastAPI, console: Console) -> None:
    @app.get(UI + "/hosts/{host:path}", include_in_schema=False)
    async def host_page(request: Request, host: str) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        # Any text may arrive here; a host id is 1..MAX_HOST printable characters.
        if not hoststate.storable(host):
            return console.render(who, "Unknown host", tag(
                "p", "That is not a host id. ", tag("a", "Back to the fleet", href=f"{UI}/")),
                section="Fleet", status=404)
        facts = await run_in_threadpool(read, console, host)
        if facts is None:
            return console.render(who, "Unknown host", tag(
                "p", "No host ", tag("code", host), " is enrolled or known here. ",
                tag("a", "Back to the fleet", href=f"{UI}/")), section="Fleet", status=404)
        return console.render(who, f"Host {host}", _page(facts), section="Fleet")


def read(console: Console, host: str) -> HostFacts | None:
    """Everything the page shows, in bounded reads; None for a host the store never saw."""
    store, now = console.store, console.now()
    policy = console.service.policy
    age = policy.freshness.report_max_age
    view = hoststate.host(store, host, now=now, stale_after=console.stale_after)
    trust = hosttrust.view(store, host, now=now, max_age=age if age is not None else NO_AGE)
    with store.read() as tx:
        identity = identities.summaries(tx, [host]).get(host)
        revoked = for_host(tx, host)
    if view is None and trust.changed_at is None and not revoked:
        return None
    report = last_report(store, host)
    appraised = None if report is None else explain(
        report.runtime, policy, replayed=replayed(report.accepted, report.reasons))
    entries, scanned = recent_entries(console, host)
    return HostFacts(view, trust, identity, revoked, report, appraised, entries, scanned)


def recent_entries(console: Console, host: str) -> tuple[list[dict[str, Any]], int]:
    """The host's entries among the latest SCAN_ENTRIES of the audit log, newest first
    (at most MAX_DECISIONS), and how many entries were looked through."""
    log = console.service.log
    size = log.size()
    start = max(0, size - SCAN_ENTRIES)
    found: list[dict[str, Any]] = []
    for stored in log.entries(start, size):
        # None: not an entry the log wrote (bad JSON, nested past the parser, no time):
        # skipped, as the decisions page skips it; `attest audit verify` says so.
        entry = decisionlog.entry(stored.data)
        if entry is not None and entry.get("host") == host:
            found.append(entry)
    found.reverse()
    return found[:MAX_DECISIONS], size - start


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> Markup:
    return when(value if isinstance(value, int) and not isinstance(value, bool) else None)


def _page(facts: HostFacts) -> Markup:
    return tag("div", _trust(facts), _decisions(facts), _measurements(facts),
               _revocations(facts), class_="host-page")


def _pair(term: str, value: Markup | str | None) -> Markup:
    return join([tag("dt", term), tag("dd", value)])


def _trust(facts: HostFacts) -> Markup:
    view, trust, found = facts.view, facts.trust, facts.identity
    state = view.state if view is not None else trust.state
    reasons = view.reasons if view is not None and view.reasons else trust.reasons
    last = None if view is None else view.last_decision
    decided = "none" if last is None else join([
        "accepted " if last["accepted"] else "denied ", when(last["time"]),
        "" if last["accepted"] else " (" + ", ".join(last["reasons"]) + ")"])
    rows = [
        _pair("State", tag("span", state, class_=f"state state-{state}", data_state=state)),
        _pair("Reasons", ", ".join(reasons) or "none"),
        _pair("Reports say", join([tag("span", trust.state,
                                       class_=f"state state-{trust.state}"),
                                   " since ", when(trust.changed_at)])),
        _pair("Last accepted report", when(trust.reported_at)),
        _pair("Last decision", decided),
        _pair("Last enrolled", when(None if view is None else view.last_enrolled_at)),
    ]
    if found is not None:
        rows.append(_pair("AK", join([short(found.ak_name, found.ak_revoked),
                                      f" ({found.aks} enrolled)" if found.aks > 1 else ""])))
        rows.append(_pair("EK", short(found.ek, found.ek_revoked) if found.ek
                          else "not recorded"))
    else:
        rows.append(_pair("AK and EK", "not enrolled (trusted by the policy, if at all)"))
    if view is not None and view.revocation is not None:
        rows.append(_pair("Revoked", view.revocation))
    return tag("section", tag("h2", "Trust", id="trust-title"), tag("dl", *rows),
               id="trust", aria_labelledby="trust-title")


def _decisions(facts: HostFacts) -> Markup:
    head = tag("tr", *[tag("th", h, scope="col") for h in (
        "Time", "Entry", "Result", "Reasons", "Subject", "Artifact")])
    rows = []
    for entry in facts.entries:
        result = _text(entry.get("decision")) or "?"
        reasons = entry.get("reasons")
        said = ", ".join(r for r in reasons if isinstance(r, str)) \
            if isinstance(reasons, list) else ""
        jti = _text(entry.get("jti"))
        rows.append(tag("tr", tag("td", _time(entry.get("time"))),
                        tag("td", _text(entry.get("kind")), " #", str(entry.get("index"))),
                        tag("td", result), tag("td", said),
                        tag("td", _text(entry.get("subject"))),
                        tag("td", tag("a", jti, href=f"{UI}/lineage/{_path(jti)}")
                            if jti else None, class_="artifact"),
                        data_result=result))
    caption = (f"{len(rows)} latest audit entries naming this host, among the last "
               f"{facts.scanned} of the log, newest first")
    table = tag("table", tag("caption", caption), tag("thead", head), tag("tbody", *rows))
    return tag("section", tag("h2", "Recent decisions", id="decisions-title"), table,
               id="decisions", aria_labelledby="decisions-title")


def _path(jti: str) -> str:
    return quote(jti, safe="")


def _measurements(facts: HostFacts) -> Markup:
    report, appraised = facts.report, facts.appraised
    head = tag("tr", *[tag("th", h, scope="col") for h in (
        "Record", "PCR", "Digest", "Description", "Reference value")])
    rows = []
    notes: list[Markup] = []
    if report is None or appraised is None:
        notes.append(tag("p", "No report has changed this host's trust state yet: "
                         "nothing to show."))
    else:
        verdict = "accepted" if report.accepted else \
            "denied (" + (", ".join(report.reasons) or "no reason") + ")"
        notes.append(tag("p", "The runtime log of the report that last changed this "
                         "host's state, ", verdict, " at ", when(report.reported_at),
                         ", each record appraised now against the policy in force."))
        if appraised.base:
            notes.append(tag("p", f"The report continued a prefix of {appraised.base} "
                             "records the verifier appraised before; these came after."))
        if appraised.note:
            notes.append(tag("p", appraised.note))
        if len(appraised.records) < appraised.total:
            notes.append(tag("p", f"{len(appraised.records)} of {appraised.total} records "
                             "shown (those refused first)."))
        for m in appraised.records:
            if m.refused is not None:
                verdict_cell = tag("td", tag("span", "No reference value allows it",
                                             class_="verdict-refused"),
                                   f" ({m.code}): ", m.refused, class_="verdict")
            elif m.unappraised is not None:
                verdict_cell = tag("td", tag("span", "Not appraised"), ": ", m.unappraised,
                                   class_="verdict")
            else:
                verdict_cell = tag("td", tag("span", "Allowed", class_="verdict-allowed"),
                                   " by ", m.allowed_by, class_="verdict")
            rows.append(tag("tr", tag("th", str(m.number), scope="row"),
                            tag("td", "" if m.pcr is None else str(m.pcr)),
                            tag("td", m.digest, class_="digest"),
                            tag("td", m.description, class_="description"), verdict_cell,
                            data_pcr="" if m.pcr is None else str(m.pcr),
                            data_verdict="refused" if m.refused else
                            "unappraised" if m.unappraised else "allowed"))
    table = tag("table", tag("caption", "Runtime measurements and the reference value "
                             "that allowed each"), tag("thead", head), tag("tbody", *rows))
    return tag("section", tag("h2", "Runtime measurements", id="measurements-title"),
               *notes, table, id="measurements", aria_labelledby="measurements-title")


def _revocations(facts: HostFacts) -> Markup:
    if not facts.revocations:
        body: Markup = tag("p", "Nothing of this host is revoked.")
    else:
        head = tag("tr", *[tag("th", h, scope="col") for h in (
            "Revoked", "Kind", "Subject", "Reason", "Cascaded from")])
        rows = [tag("tr", tag("td", when(r.revoked_at)), tag("td", r.kind),
                    tag("td", short(r.subject, None)), tag("td", r.reason),
                    tag("td", r.cascaded_from or ""), data_kind=r.kind)
                for r in facts.revocations]
        body = tag("table", tag("caption", f"{len(rows)} revocations concerning this host, "
                                "newest first"), tag("thead", head), tag("tbody", *rows))
    return tag("section", tag("h2", "Revocations", id="revocations-title"), body,
               id="revocations", aria_labelledby="revocations-title")
