"""The console's decisions page (attest.console.pages.decisions): the newest decisions
from the audit log in the store, live over /ui/decisions/stream, and the per-minute
charts counted server-side. On a real store, a host on its own swtpm issuing the
artifacts, through FastAPI's TestClient."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from attest.audit.entry import Entry, EntryKind, Outcome
from attest.audit.log import AuditLog
from attest.cli.main import cli
from attest.console import decisionlog, session
from attest.policy import NonceMode
from attest.server import events as event_stream
from attest.server.app import create_app
from attest.store import Store, tokens
from attest.timetext import iso
from tests.server.conftest import Service
from tests.server.serving import admin_token, challenge, listen, verify
from tests.verify.rig import Rig

FORM = {"content-type": "application/x-www-form-urlencoded"}
ROW = re.compile(r'<tr data-result="(accepted|denied)" data-position="(\d+)">(.*?)</tr>', re.S)


def _login(service: Service, token: str | None = None) -> None:
    answer = service.client.post("/ui/login",
                                 content=f"token={token or admin_token(service.home)}",
                                 headers=FORM, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def _log(service: Service) -> AuditLog:
    log: AuditLog = service.client.app.state.service.log  # type: ignore[attr-defined]
    return log


def _decision(when: int, accepted: bool, *reasons: str, subject: str = "s",
              host: str = "h") -> Entry:
    return Entry(kind=EntryKind.DECISION,
                 decision=Outcome.ACCEPTED if accepted else Outcome.DENIED,
                 time=when, reasons=reasons, subject=subject, host=host)


def _stream(service: Service, after: int | None = None,
            last_id: str | None = None) -> list[dict[str, Any]]:
    """A catch-up read (timeout=0) of the stream: its decision messages, each with id."""
    query = "timeout=0" + ("" if after is None else f"&after={after}")
    headers = {} if last_id is None else {"last-event-id": last_id}
    answer = service.client.get(f"/ui/decisions/stream?{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    found = []
    for block in answer.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if not line.startswith(":") and ": " in line)
        if fields.get("event") == "decision":
            message = json.loads(fields["data"])
            assert message["id"] == int(fields["id"])
            found.append(message)
    return found


def test_real_decisions_are_listed_newest_first_with_their_reasons(service: Service) -> None:
    raw = service.rig.issue(nonce=challenge(service.client))
    assert verify(service.client, raw)["accepted"]
    replay = verify(service.client, raw)
    assert not replay["accepted"] and "replayed" in replay["reasons"]
    _login(service)
    page = service.client.get("/ui/decisions")
    assert page.status_code == 200, page.text
    assert "<script>" not in page.text and " style=" not in page.text
    assert '<script src="/ui/assets/decisions.js" defer="defer"></script>' in page.text
    rows = ROW.findall(page.text)
    assert [r[0] for r in rows] == ["denied", "accepted"]
    (_, denied_at, denied), (_, accepted_at, accepted) = rows
    assert int(denied_at) == int(accepted_at) + 1  # positions: audit index + 1
    assert "replayed" in denied and "deploy-bot" in denied and "web-1" in denied
    assert ">none<" in accepted and "deploy-bot" in accepted and "web-1" in accepted
    size = _log(service).size()
    assert f'id="decisions" data-cursor="{size}"' in page.text
    assert int(denied_at) <= size
    assert 'id="live" aria-live="polite"' in page.text
    for chart in ("chart-hour", "chart-day"):
        figure = _figure(page.text, chart)
        assert '<svg' in figure and 'role="img"' in figure and "aria-label=" in figure
        assert "<table>" in figure and '<th scope="row">' in figure
    # The hour's aria-label says the counts in words.
    assert re.search(r'aria-label="Decisions per minute, the last hour, by result: '
                     r'1 accepted, 1 denied', page.text)
    script = service.client.get("/ui/assets/decisions.js")
    assert script.status_code == 200 and "innerHTML" not in script.text
    assert "textContent" in script.text


def test_hostile_subject_host_and_reasons_are_text_never_markup(service: Service) -> None:
    bad = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    now = int(time.time())
    _log(service).record_many([
        _decision(now, False, f"r{bad}", "\n\ndata: forged", subject=f"s{bad}",
                  host=f"h{bad}")])
    _login(service)
    for by in ("result", "reason"):
        page = service.client.get(f"/ui/decisions?by={by}").text
        assert "<script>alert" not in page and "<img" not in page and "onerror=alert" \
            not in page.replace("onerror=alert(2)&gt;", "")
        assert "s&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in page
        assert "h&lt;script&gt;" in page and "r&lt;script&gt;" in page
    by_reason = service.client.get("/ui/decisions?by=reason").text
    hour = _figure(by_reason, "chart-hour")
    assert '<th scope="col">r&lt;script&gt;' in hour  # the reason names a column, as text
    # On the stream the same values are JSON strings in one data line: no forged message.
    messages = _stream(service, after=0)
    assert [m["data"]["subject"] for m in messages] == [f"s{bad}"]
    assert messages[0]["data"]["reasons"] == [f"r{bad}", "\n\ndata: forged"]
    # An entry that is not what attest writes (the store is hostile) is skipped, not shown.
    with Store.open(service.url) as store, store.write() as tx:
        size = tx.scalar("SELECT max(idx) FROM audit_entries") + 1
        for i, data in enumerate((b"\xff<b>not json", b'{"kind":"decision","time":"x"}',
                                  b'{"kind":"decision","time":1,"decision":"<b>",'
                                  b'"reasons":[]}', b"[1,2]")):
            tx.execute("INSERT INTO audit_entries (idx, data, leaf_hash) "
                       "VALUES (:i, :d, :h)", {"i": size + i, "d": data, "h": b"0" * 32})
    page = service.client.get("/ui/decisions")
    assert page.status_code == 200 and "<b>" not in page.text
    assert len(ROW.findall(page.text)) == 1
    assert len(_stream(service, after=0)) == 1


def test_the_stream_sends_decisions_after_the_cursor_and_resumes(service: Service) -> None:
    raw = service.rig.issue(nonce=challenge(service.client))
    assert verify(service.client, raw)["accepted"]
    _login(service)
    cursor = int(re.search(r'data-cursor="(\d+)"',  # type: ignore[union-attr]
                           service.client.get("/ui/decisions").text).group(1))
    assert _stream(service, after=cursor) == []  # the page already shows the first
    assert verify(service.client, service.rig.issue(nonce=challenge(service.client)))[
        "accepted"]
    # More entries than one read holds that are not decisions: the stream reads past them.
    now = int(time.time())
    _log(service).record_many([
        Entry(kind=EntryKind.HOST_STATE, decision=Outcome.TRUSTED, time=now, host="web-1")
        for _ in range(event_stream.BATCH + 5)])
    assert not verify(service.client, raw)["accepted"]  # a replay
    found = _stream(service, after=cursor)
    assert [m["data"]["result"] for m in found] == ["accepted", "denied"]
    assert "replayed" in found[1]["data"]["reasons"]
    assert found[0]["id"] > cursor and found[1]["id"] > found[0]["id"] + event_stream.BATCH
    assert found[1]["id"] == _log(service).size()
    assert all(m["kind"] == "decision" and m["data"]["host"] == "web-1" for m in found)
    # Last-Event-ID (what EventSource sends on reconnecting) wins over ?after=.
    resumed = _stream(service, after=cursor, last_id=str(found[0]["id"]))
    assert [m["id"] for m in resumed] == [found[1]["id"]]
    assert _stream(service, after=0, last_id=str(found[1]["id"])) == []


def test_bounds_are_refused_without_a_traceback(service: Service) -> None:
    _login(service)
    client = service.client
    for query in ("after=-1", f"after={2**62 + 1}", "after=abc", "after=" + "9" * 40,
                  "timeout=-1", "timeout=301"):
        answer = client.get(f"/ui/decisions/stream?{query}")
        assert answer.status_code == 422, query
        assert "Traceback" not in answer.text
    for last_id in (b"x", b"-1", b"9" * 25, b"1 2", "\u0661".encode()):
        answer = client.get("/ui/decisions/stream?timeout=0",
                            headers={"last-event-id": last_id})
        assert answer.status_code == 400, last_id
        assert "Traceback" not in answer.text
    for by in ("count", "<b>", "result ", "reason" * 50, ""):
        answer = client.get("/ui/decisions", params={"by": by})
        assert answer.status_code == 422, by
        assert "<b>" not in answer.text and "Traceback" not in answer.text


def test_no_session_no_page_and_no_stream(service: Service) -> None:
    client = service.client
    answer = client.get("/ui/decisions", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert client.get("/ui/decisions/stream?timeout=0").status_code == 401
    client.cookies.set("attest_console", "0" * 16 + ".9999999999." + "0" * 64, path="/ui")
    assert client.get("/ui/decisions", follow_redirects=False).status_code == 303
    stream = client.get("/ui/decisions/stream?timeout=0")
    assert stream.status_code == 401 and "decision" not in stream.text


def _figure(text: str, chart: str) -> str:
    return text.split(f'<figure id="{chart}"', 1)[1].split("</figure>", 1)[0]


def _counts(text: str, chart: str, start: int) -> list[int]:
    """The counts in ``chart``'s table row for the bucket starting at ``start``."""
    found = re.search(re.escape(f'<time datetime="{iso(start)}">') + r".*?</th>(.*?)</tr>",
                      _figure(text, chart))
    assert found is not None, iso(start)
    return [int(n) for n in re.findall(r"<td>(\d+)</td>", found.group(1))]


def test_chart_counts_are_the_decisions_in_their_minutes(service: Service) -> None:
    now = int(time.time())
    if now % 60 > 50:  # the test's minutes must not move under it while it runs
        time.sleep(61 - now % 60)
        now = int(time.time())
    this = now // 60
    five_ago, half_ago, ten_hours_ago = this - 5, this - 30, this - 600
    entries = [
        *[_decision(five_ago * 60 + s, True) for s in (0, 1, 59)],
        _decision(five_ago * 60 + 30, False, "replayed", "stale_quote"),
        *[_decision(half_ago * 60 + 7, False, "replayed") for _ in range(2)],
        *[_decision(ten_hours_ago * 60 + 1, True) for _ in range(4)],
        _decision(ten_hours_ago * 60 + 2, False, "bad_signature"),
        *[_decision(now - 2 * 86400, True) for _ in range(7)],  # before the day
        _decision(now + 3600, True),  # a clock ahead: not in any minute shown
    ]
    # Out of time order (replicas' clocks differ, an entry stamped long ago lands last):
    # the walk back still finds them all.
    _log(service).record_many(entries[12:] + entries[:12])
    _login(service)
    page = service.client.get("/ui/decisions?by=result").text
    assert _counts(page, "chart-hour", five_ago * 60) == [3, 1, 4]  # accepted, denied, total
    assert _counts(page, "chart-hour", half_ago * 60) == [0, 2, 2]
    assert _counts(page, "chart-hour", (this - 4) * 60) == [0, 0, 0]
    assert 'aria-label="Decisions per minute, the last hour, by result: 3 accepted, 3 denied' \
        in page
    # The day's table has a row an hour, counted from the day's first minute.
    first = this - 1439
    row_start = (first + (ten_hours_ago - first) // 60 * 60) * 60
    assert _counts(page, "chart-day", row_start) == [4, 1, 5]
    assert 'aria-label="Decisions per minute, the last day, by result: 7 accepted, 4 denied' \
        in page
    by_reason = service.client.get("/ui/decisions?by=reason").text
    # By reason: one column a reason of a denial, the most frequent first, ties by name.
    hour = _figure(by_reason, "chart-hour")
    columns = re.findall(r'<th scope="col">([^<]*)</th>', hour)
    assert columns == ["From (UTC)", "replayed", "stale_quote", "total"]
    assert _counts(by_reason, "chart-hour", five_ago * 60) == [1, 1, 2]
    assert _counts(by_reason, "chart-hour", half_ago * 60) == [2, 0, 2]
    day = _figure(by_reason, "chart-day")
    assert re.findall(r'<th scope="col">([^<]*)</th>', day) == [
        "From (UTC)", "replayed", "bad_signature", "stale_quote", "total"]


def test_the_count_is_bounded_and_says_when_it_stopped_short(service: Service) -> None:
    now = int(time.time())
    _log(service).record_many([_decision(now - 600 + i, True) for i in range(50)])
    with Store.open(service.url) as store:
        whole = decisionlog.tally(store, now, 1440)
        assert whole.complete and sum(c.results["accepted"] for c in whole.minutes.values()) \
            == 50
        short = decisionlog.tally(store, now, 1440, cap=20)
        assert not short.complete and short.read == 20
        assert sum(c.results["accepted"] for c in short.minutes.values()) == 20
        shown, top = decisionlog.newest(store, 10)
        assert len(shown) == 10 and top == _log(service).size()
        assert [d.time for d in shown] == sorted((d.time for d in shown), reverse=True)
        few, _ = decisionlog.newest(store, 100, scan=7)
        assert len(few) == 7  # a page reads at most ``scan`` entries


def test_the_kept_count_adds_what_any_replica_logged_since(service: Service) -> None:
    # The counter keeps its counts between requests and reads only the new entries; they
    # come from the store, so a decision another replica logged (here: written by a
    # second log on the same database) counts the same as this process's own.
    now = int(time.time())
    minute = now // 60 - 2
    _log(service).record_many([_decision(minute * 60, True) for _ in range(3)])
    _login(service)
    page = service.client.get("/ui/decisions").text
    assert _counts(page, "chart-hour", minute * 60) == [3, 0, 3]
    with Store.open(service.url) as store:
        other = AuditLog.open(store, service.home)
        other.record_many([_decision(minute * 60 + 5, False, "replayed"),
                           _decision(minute * 60 + 6, True)])
    page = service.client.get("/ui/decisions").text
    assert _counts(page, "chart-hour", minute * 60) == [4, 1, 5]
    with Store.open(service.url) as store:
        counter = decisionlog.DecisionCounter(store, 60, cap=3)
        kept = counter.tally(now)
        assert not kept.complete  # three entries of a longer log
        first = kept.minutes[minute]
        _log(service).record_many([_decision(minute * 60, True)])
        again = counter.tally(now)
        assert again.minutes[minute].results["accepted"] == first.results["accepted"] + 1
        # What a request got is its own: the next request's reads do not change it.
        assert kept.minutes[minute] is not again.minutes[minute]
        fresh = decisionlog.tally(store, now, 60)
        # More than ``cap`` new entries: the counter walks back again rather than read them.
        _log(service).record_many([_decision(minute * 60, False, "x") for _ in range(5)])
        walked = counter.tally(now)
        assert walked.read == 3 and not walked.complete
        whole = decisionlog.DecisionCounter(store, 60).tally(now)
        assert whole.complete
        assert whole.minutes[minute].results == fresh.minutes[minute].results + Counter(denied=5)


def test_every_replica_shows_every_replicas_decisions(rig: Rig, pg_url: str) -> None:
    # Two services (replicas) on one PostgreSQL: a decision made at either is on both
    # pages, streams and charts, read from the shared store, not from a process.
    home = rig.tmp / "verifier"
    home.mkdir()
    policy = rig.policy(nonce=NonceMode.REQUIRED)
    with TestClient(create_app(policy, pg_url, home)) as one, \
            TestClient(create_app(policy, pg_url, home)) as two:
        a, b = (Service(client, rig, home, pg_url) for client in (one, two))
        token = admin_token_on(home, pg_url)
        for replica in (a, b):
            _login(replica, token)
            assert ROW.findall(replica.client.get("/ui/decisions").text) == []
        raw = rig.issue(nonce=challenge(a.client))
        assert verify(a.client, raw)["accepted"]
        assert not verify(b.client, raw)["accepted"]  # the replay, at the other replica
        minute = int(time.time()) // 60
        for replica in (a, b):
            page = replica.client.get("/ui/decisions").text
            assert [r[0] for r in ROW.findall(page)] == ["denied", "accepted"]
            assert sum(_counts(page, "chart-hour", m * 60)[2]
                       for m in (minute - 1, minute)) == 2
            assert [m["data"]["result"] for m in _stream(replica, after=0)] == [
                "accepted", "denied"]


def admin_token_on(home: Path, url: str) -> str:
    """An admin token in the store at ``url`` (`attest admin token create --store`)."""
    made = CliRunner().invoke(cli, ["--home", str(home), "admin", "token", "create", "--name",
                                    "ops", "--store", url, "--json"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    token: str = json.loads(made.output)["token"]
    return token


def test_a_revoked_token_ends_its_stream_before_the_next_decision(service: Service) -> None:
    # The stream checks the session before each read: once the token is revoked, a
    # decision logged afterwards is never sent on a stream that was open before.
    token = admin_token(service.home)
    _login(service, token)
    cursor = _log(service).size()
    stream = listen(service.client, f"/ui/decisions/stream?after={cursor}&timeout=20")
    now = int(time.time())
    _log(service).record_many([_decision(now, True, subject="before")])
    # Wait until the open stream has sent it: the stream is live and reading.
    assert stream.saw('"before"')
    ident = service.client.cookies[session.COOKIE].split(".")[0]
    with Store.open(service.url) as store:
        assert tokens.revoke(store, ident, now)
    _log(service).record_many([_decision(now, True, subject="after")])
    assert stream.ended()
    assert not any('"after"' in line for line in stream.lines)
    assert service.client.get("/ui/decisions/stream?timeout=0").status_code == 401


def test_a_day_too_long_to_count_says_which_minutes_are_partial(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decisionlog, "MAX_COUNTED", 5)
    this = int(time.time()) // 60
    _log(service).record_many([_decision((this - 30 + i) * 60, True) for i in range(10)])
    _login(service)
    page = service.client.get("/ui/decisions").text
    # The newest five entries are counted: minutes this-25 .. this-21; the ones before,
    # in the same hour, are not, and the page says from when the counts are whole.
    assert "too many entries to count the whole day" in page
    assert f'<time datetime="{iso((this - 25) * 60)}">' in page.split("counted only in part")[0]
    assert _counts(page, "chart-hour", (this - 25) * 60) == [1, 0, 1]
    assert _counts(page, "chart-hour", (this - 26) * 60) == [0, 0, 0]
    with Store.open(service.url) as store:
        short = decisionlog.tally(store, this * 60, 1440, cap=5)
        assert not short.recent(60).complete and short.recent(20).complete
        assert short.recent(20).first == this - 19 and short.recent(5000).first == short.first
