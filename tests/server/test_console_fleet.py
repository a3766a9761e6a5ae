"""The console's fleet page (AK and EK per host, the live status and the cursor its
script streams from) and the host page (trust, recent audit entries, the runtime
measurements of the report that last changed its state with the reference value that
allowed each or why none did, revocations). On a real store with the host on its own
swtpm, through FastAPI's TestClient; hostile host ids written as a database writer
would."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import time
from typing import Any
from urllib.parse import quote

from attest.artifact import jws
from attest.store import Store, hostreports, identities
from tests.server.conftest import Service
from tests.server.serving import admin_token, challenge, listen, verify
from tests.server.test_admin import _auth
from tests.server.test_reports import Continuous, _report, continuous
from tests.verify.rig import HOST_ID

__all__ = ["continuous"]  # the fixture, imported for pytest

FORM = {"content-type": "application/x-www-form-urlencoded"}
HOSTILE = '<img src=x onerror=alert(1)>/"?&x=1#\'</td>'


def _signed_in(service: Service) -> str:
    token = admin_token(service.home)
    answer = service.client.post("/ui/login", content=f"token={token}", headers=FORM,
                                 follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return token


def _enrolled(service: Service) -> Store:
    store = service.rig.store("verifier")  # the service's own store and audit home
    service.rig.enroll(store)
    return store


def _row(page: str, host: str) -> str:
    found = re.search(r'<tr data-host="' + re.escape(html.escape(host, quote=True))
                      + r'" data-state="\w+">.*?</tr>', page, re.S)
    assert found, page
    return found.group(0)


def _events(service: Service, path: str) -> list[tuple[str, dict[str, Any]]]:
    answer = service.client.get(path)
    assert answer.status_code == 200, answer.text
    found = []
    for block in answer.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":"))
        if "data" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_the_fleet_shows_each_hosts_ak_and_ek_short_and_whether_revoked(
        service: Service) -> None:
    _enrolled(service)
    rig = service.rig
    ak, ek = rig.identity.ak_name.hex(), rig.ek_id
    assert verify(service.client, rig.issue(nonce=challenge(service.client)))["accepted"]
    token = _signed_in(service)
    page = service.client.get("/ui/").text
    row = _row(page, HOST_ID)
    assert f'<code title="{ak}">{ak[:12]}\u2026</code>' in row
    assert f'<code title="{ek}">{ek[:12]}\u2026</code>' in row
    assert "revoked" not in row
    assert f'<a href="/ui/hosts/{HOST_ID}">{HOST_ID}</a>' in row
    assert re.search(r'<table id="fleet" data-cursor="\d+">', page)
    assert '<p id="live" aria-live="polite"' in page
    assert '<script src="/ui/assets/fleet.js" defer="defer"></script>' in page
    # Revoking the AK: the row says so in words (and the reason in its title).
    answer = service.client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "ak", "subject": ak, "reason": "lost <laptop>"})
    assert answer.status_code in (200, 201), answer.text
    row = _row(service.client.get("/ui/").text, HOST_ID)
    assert f'{ak[:12]}\u2026</code> <span class="state state-revoked" ' \
           'title="lost &lt;laptop&gt;">revoked</span>' in row


def test_the_fleet_reads_the_identities_of_a_page_in_one_statement(service: Service) -> None:
    store = _enrolled(service)
    statements: list[str] = []
    with store.read() as tx:
        real = tx.all

        def counted(sql: str, params: Any = None) -> Any:
            statements.append(sql)
            return real(sql, params or {})

        tx.all = counted  # type: ignore[method-assign]
        many = identities.summaries(tx, [f"h{i}" for i in range(300)] + [HOST_ID])
    assert len(statements) == 1
    assert list(many) == [HOST_ID] and many[HOST_ID].ek == service.rig.ek_id
    try:
        with store.read() as tx:
            identities.summaries(tx, ["h"] * (identities.MAX_SUMMARY_HOSTS + 1))
    except ValueError:
        pass
    else:
        raise AssertionError("a summary read past its bound")


def test_the_host_page_shows_measurements_with_their_reference_or_why_none_matched(
        continuous: Continuous) -> None:
    svc = continuous
    store = _enrolled(svc)
    assert _report(svc)["accepted"] is True
    token = _signed_in(svc)
    page = svc.client.get(f"/ui/hosts/{HOST_ID}")
    assert page.status_code == 200, page.text
    text = page.text
    assert f"<h1>Host {HOST_ID}</h1>" in text
    for section in ("trust", "decisions", "measurements", "revocations"):
        assert f'<section id="{section}"' in text or f'id="{section}"' in text
    trust = text.split('id="trust"', 1)[1].split("</section>", 1)[0]
    assert 'data-state="trusted"' in trust and svc.rig.ek_id in trust
    measured = text.split('id="measurements"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr data-pcr="(\d+)" data-verdict="(\w+)">(.*?)</tr>', measured, re.S)
    assert rows and all(verdict == "allowed" for _, verdict, _ in rows), measured
    assert "reference.runtime" in measured and "accepted" in measured
    decisions = text.split('id="decisions"', 1)[1].split("</section>", 1)[0]
    assert 'data-result="accepted"' in decisions
    assert "Nothing of this host is revoked." in text

    # An unexpected measurement: the host turns untrusted, and its page says which
    # record no reference value allowed, and why.
    svc.rig.host.ok("measure", "command", "--", "cat")
    denied = _report(svc)
    assert denied["reasons"] == ["reference_value_mismatch"]
    stored = hostreports.last(store, HOST_ID)
    assert stored is not None and not stored.accepted
    # A report that proves nothing of the host (its signature broken) moves no state and
    # replaces nothing: only the host's own verified evidence is shown.
    svc.rig.host.ok("measure", "command", "--", "tail")
    raw = svc.rig.issue("agent", action="report", nonce=challenge(svc.client),
                        now=int(svc.clock.now))
    head, body, signature = raw.split(b".")
    flipped = signature[:10] + (b"A" if signature[10:11] != b"A" else b"B") + signature[11:]
    forged = svc.client.post("/v1/reports", json={
        "report": b".".join([head, body, flipped]).decode()}).json()
    assert forged["accepted"] is False
    assert "invalid_signature" in forged["reasons"], forged
    assert hostreports.last(store, HOST_ID) == stored
    assert b"tail" not in hostreports.last(store, HOST_ID).runtime.log  # type: ignore[union-attr]
    text = svc.client.get(f"/ui/hosts/{HOST_ID}").text
    trust = text.split('id="trust"', 1)[1].split("</section>", 1)[0]
    assert "reference_value_mismatch" in trust
    measured = text.split('id="measurements"', 1)[1].split("</section>", 1)[0]
    refused = re.findall(r'<tr data-pcr="\d+" data-verdict="refused">(.*?)</tr>', measured,
                         re.S)
    assert len(refused) == 1, measured
    assert "No reference value allows it" in refused[0]
    assert "(reference_value_mismatch)" in refused[0] and "/usr/bin/cat" in refused[0]
    assert "denied (reference_value_mismatch)" in measured
    decisions = text.split('id="decisions"', 1)[1].split("</section>", 1)[0]
    assert 'data-result="denied"' in decisions and 'data-result="untrusted"' in decisions

    # Revoking the host: its revocations list the host id, its EK and its AK.
    answer = svc.client.post("/v1/revocations", headers=_auth(token), json={
        "kind": "host", "subject": HOST_ID, "reason": "retired <now>"})
    assert answer.status_code in (200, 201), answer.text
    text = svc.client.get(f"/ui/hosts/{HOST_ID}").text
    revoked = text.split('id="revocations"', 1)[1].split("</section>", 1)[0]
    kinds = re.findall(r'<tr data-kind="(\w+)">', revoked)
    assert sorted(kinds) == ["ak", "ek", "host"], revoked
    assert "retired &lt;now&gt;" in revoked and "<now>" not in revoked


def test_hostile_host_ids_are_text_on_both_pages(service: Service) -> None:
    store = service.rig.store("verifier")
    service.rig.write_enrollment_row(store, HOSTILE, ak_name=b"\x00\x0b" + b"\x01" * 32)
    _signed_in(service)
    fleet = service.client.get("/ui/").text
    assert HOSTILE not in fleet and "<img" not in fleet
    escaped = html.escape(HOSTILE, quote=True)
    row = _row(fleet, HOSTILE)
    link = f"/ui/hosts/{quote(HOSTILE, safe='')}"
    assert f'<a href="{html.escape(link, quote=True)}">{escaped}</a>' in row
    page = service.client.get(link)
    assert page.status_code == 200, page.text
    assert f"<h1>Host {escaped}</h1>" in page.text
    assert HOSTILE not in page.text and "<img" not in page.text


def test_the_host_page_is_a_404_for_unknown_or_impossible_host_ids(service: Service) -> None:
    _signed_in(service)
    # A newline never reaches the page: the route's pattern stops at it (a plain 404).
    assert service.client.get("/ui/hosts/a%0Ab").status_code == 404
    for path in ("/ui/hosts/nobody", "/ui/hosts/" + "a" * 256, "/ui/hosts/a%00b",
                 "/ui/hosts/a%09b", "/ui/hosts/%3Cscript%3E"):
        answer = service.client.get(path)
        assert answer.status_code == 404, path
        assert "Unknown host" in answer.text and "<script>" not in answer.text, path
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_without_a_session_the_host_page_asks_to_sign_in_and_events_are_refused(
        service: Service) -> None:
    answer = service.client.get(f"/ui/hosts/{HOST_ID}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    events = service.client.get("/ui/events?timeout=0")
    assert events.status_code == 401 and "data:" not in events.text
    service.client.cookies.set("attest_console", "forged.9999999999.00", path="/ui")
    assert service.client.get("/ui/events?timeout=0").status_code == 401
    assert service.client.get(f"/ui/hosts/{HOST_ID}",
                              follow_redirects=False).status_code == 303


def test_a_session_streams_host_state_events_from_the_pages_cursor(
        continuous: Continuous) -> None:
    svc = continuous
    _signed_in(svc)
    page = svc.client.get("/ui/").text
    cursor = int(re.search(r'data-cursor="(\d+)"', page).group(1))  # type: ignore[union-attr]
    assert _report(svc)["accepted"] is True
    streamed = _events(svc, f"/ui/events?after={cursor}&timeout=0")
    assert [(kind, e["subject"], e["data"]["state"]) for kind, e in streamed] == [
        ("host_state", HOST_ID, "trusted")]
    # A page rendered now starts after it: nothing to replay.
    later = int(re.search(r'data-cursor="(\d+)"',  # type: ignore[union-attr]
                          svc.client.get("/ui/").text).group(1))
    assert later == streamed[-1][1]["id"]
    assert _events(svc, f"/ui/events?after={later}&timeout=0") == []
    assert svc.client.get("/ui/events?timeout=301").status_code == 422


def test_pages_keep_their_address_from_other_sites_but_let_a_form_say_its_origin(
        service: Service) -> None:
    """Referrer-Policy: same-origin. With no-referrer a browser (Chromium) sends
    ``Origin: null`` on the console's own login and logout forms, which the Origin check
    refuses: no operator could sign in from a browser."""
    answer = service.client.get("/ui/login")
    assert answer.headers["referrer-policy"] == "same-origin"
    token = admin_token(service.home)
    for origin, status in (("null", 403), ("http://testserver", 303)):
        posted = service.client.post("/ui/login", content=f"token={token}",
                                     headers={**FORM, "origin": origin},
                                     follow_redirects=False)
        assert posted.status_code == status, origin


def test_fleet_js_is_served_and_writes_stream_data_as_text_only(service: Service) -> None:
    _signed_in(service)
    answer = service.client.get("/ui/assets/fleet.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    script = answer.text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "querySelector('[data-host=", 'querySelector("[data-host='):
        assert sink not in script, sink
    assert 'new EventSource("/ui/events?after=" + encodeURIComponent(cursor))' in script
    assert "textContent" in script


def test_a_log_that_does_not_replay_to_its_quote_is_not_shown_as_allowed_measurements(
        continuous: Continuous) -> None:
    """Attack: a host measures something no reference value allows, then sends a report
    whose runtime log is an older one that omits it. The quote is genuine (the host's AK),
    the log does not replay to it: eventlog_mismatch, the host turns untrusted, and the
    store keeps that report's log. Appraised record by record, every record of the lie
    was 'Allowed': the page must not present a log that did not replay as measurements."""
    svc = continuous
    store = _enrolled(svc)
    first = svc.rig.issue("agent", action="report", nonce=challenge(svc.client),
                          now=int(svc.clock.now))
    assert svc.client.post("/v1/reports", json={"report": first.decode()}).json()["accepted"]
    old = jws.parse(first).claims.evidence
    svc.rig.host.ok("measure", "command", "--", "cat")  # measured: in PCR 15, not allowed
    raw = svc.rig.issue("agent", action="report", nonce=challenge(svc.client),
                        now=int(svc.clock.now))
    lying = svc.rig.reissue(raw, evidence=lambda e: dataclasses.replace(
        e, runtime_log=old.runtime_log, runtime_log_base=old.runtime_log_base))
    denied = svc.client.post("/v1/reports", json={"report": lying.decode()}).json()
    assert denied["reasons"] == ["eventlog_mismatch"], denied
    stored = hostreports.last(store, HOST_ID)
    assert stored is not None and b"cat" not in stored.runtime.log  # the lie is what is kept
    _signed_in(svc)
    text = svc.client.get(f"/ui/hosts/{HOST_ID}").text
    measured = text.split('id="measurements"', 1)[1].split("</section>", 1)[0]
    assert 'data-verdict="allowed"' not in measured and "Allowed" not in measured, measured
    assert "does not replay" in measured and "eventlog_mismatch" in measured, measured


def test_an_open_event_stream_ends_when_its_session_expires(continuous: Continuous) -> None:
    """Attack: keep /ui/events open past the session's end. The decisions stream checks
    the whole session before each read; /ui/events checked only the token, so a session
    past its expiry kept receiving changes for the rest of the stream's time."""
    from attest.console import session

    svc = continuous
    _signed_in(svc)
    stream = listen(svc.client, "/ui/events?timeout=30")
    with Store.open(svc.url) as store:
        store.revoke_host("web-before", "retired", int(svc.clock.now))
        assert stream.saw("web-before")
        svc.clock.now += session.SESSION_S + 1  # the cookie's expiry is behind us
        time.sleep(1.5)  # a poll or more: the stream checks before its next read
        store.revoke_host("web-after", "retired", int(svc.clock.now))
    assert stream.ended()
    assert not any("web-after" in line for line in stream.lines), stream.lines


def test_an_entry_changed_in_the_database_to_deep_json_is_skipped_not_a_500(
        continuous: Continuous) -> None:
    """Attack (a database writer): an audit entry rewritten as JSON nested deeper than
    the parser's recursion limit. The decisions page skips it (decisionlog); the host
    page's look through the latest entries raised RecursionError: a 500."""
    svc = continuous
    store = _enrolled(svc)
    assert _report(svc)["accepted"] is True
    _signed_in(svc)
    with store.write() as tx:
        tx.execute("UPDATE audit_entries SET data = :data WHERE idx = 0",
                   {"data": b"[" * 100_000 + b"]" * 100_000})
    for path in (f"/ui/hosts/{HOST_ID}", "/ui/decisions"):
        answer = svc.client.get(path)
        assert answer.status_code == 200, (path, answer.text[-300:])
