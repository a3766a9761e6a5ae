"""The operator console (attest.console): login with an admin token becomes a cookie
session, never a token in a URL or a page; the fleet page lists the store's hosts with
their state, escaped. On a real store, a host on its own swtpm issuing the artifacts,
through FastAPI's TestClient. Browser tests (chromium) are issue 17's next step."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

from attest.console import session
from attest.policy import NonceMode
from attest.store import Store, tokens
from tests.server.conftest import Service
from tests.server.serving import admin_token, challenge, listen, policy_file, served, verify
from tests.verify.rig import Rig

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _login(service: Service, token: str) -> Any:
    return service.client.post("/ui/login", content=f"token={token}", headers=FORM,
                               follow_redirects=False)


def _refused(answer: Any) -> None:
    assert answer.status_code == 401, answer.text
    assert "not a token in force" in answer.text
    assert session.COOKIE not in answer.headers.get("set-cookie", "")


def test_login_refuses_anything_but_a_token_in_force_in_a_form_body(service: Service) -> None:
    token = admin_token(service.home)
    secret = token.rsplit("_", 1)[1]
    wrong = token[: -len(secret)] + ("A" if secret[0] != "A" else "B") + secret[1:]
    for attempt in (wrong, token + "x", "", "x" * 400, f"{token}&token={token}"):
        _refused(_login(service, attempt))
    client = service.client
    # The right token anywhere but a form body: in the query, as JSON, as a bearer header.
    _refused(client.post(f"/ui/login?token={token}", headers=FORM, follow_redirects=False))
    _refused(client.post("/ui/login", json={"token": token}, follow_redirects=False))
    _refused(client.post("/ui/login", content=f"token={token}", follow_redirects=False,
                         headers={"authorization": f"Bearer {token}"}))
    _refused(client.post("/ui/login", content=f"token={token}&x=1", headers=FORM,
                         follow_redirects=False))
    _refused(client.post("/ui/login", content=b"token=" + b"A" * 100_000, headers=FORM,
                         follow_redirects=False))
    # The right token posted from another site's page (login CSRF): refused by Origin.
    for origin in ("https://evil.example", "null", "http://testserver.evil"):
        answer = client.post("/ui/login", content=f"token={token}", follow_redirects=False,
                             headers={**FORM, "origin": origin})
        assert answer.status_code == 403, origin
        assert session.COOKIE not in answer.headers.get("set-cookie", "")
    same = client.post("/ui/login", content=f"token={token}", follow_redirects=False,
                       headers={**FORM, "origin": "http://testserver"})
    assert same.status_code == 303
    client.cookies.clear()
    assert session.COOKIE not in client.cookies
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_a_session_shows_the_fleet_with_no_token_in_any_url_or_page(service: Service) -> None:
    token = admin_token(service.home)
    assert verify(service.client, service.rig.issue(nonce=challenge(service.client)))["accepted"]
    answer = _login(service, token)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert token not in cookie and token.rsplit("_", 1)[1] not in cookie
    fleet = service.client.get("/ui/", follow_redirects=False)
    assert fleet.status_code == 200, fleet.text
    assert 'data-host="web-1" data-state="trusted"' in fleet.text
    assert "state-trusted" in fleet.text
    assert "script-src 'self'" in fleet.headers["content-security-policy"]
    assert fleet.headers["cache-control"] == "no-store"
    assert "<script>" not in fleet.text and " style=" not in fleet.text  # CSP holds
    secret = token.rsplit("_", 1)[1]
    for text in (fleet.text, str(fleet.url), answer.headers["location"]):
        assert secret not in text and token not in text
    # A replay: the host is untrusted on the next load, with the reason.
    raw = service.rig.issue(nonce=challenge(service.client))
    assert verify(service.client, raw)["accepted"]
    assert not verify(service.client, raw)["accepted"]
    fleet = service.client.get("/ui/?state=untrusted")
    assert 'data-host="web-1" data-state="untrusted"' in fleet.text and "replayed" in fleet.text
    assert "web-1" not in service.client.get("/ui/?state=trusted").text.split("<tbody>")[1]
    assert service.client.get("/ui/?state=<b>").status_code == 422
    css = service.client.get("/ui/assets/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for name in ("..%2Fsession.py", "session.py", "console.css.bak", "%2e%2e"):
        assert service.client.get(f"/ui/assets/{name}").status_code == 404, name


def test_a_hosts_id_and_reasons_are_text_on_the_page_never_markup(service: Service) -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    with Store.open(service.url) as store, store.write() as tx:
        tx.execute("INSERT INTO host_decisions (host, accepted, reasons, decided_at, "
                   "audit_index, accepted_at, accepted_index) VALUES (:h, 0, :r, 1, 0, 1, 0)",
                   {"h": hostile, "r": "</td><script>x</script>"})
    _login(service, admin_token(service.home))
    # The page's own script (a file of the package) is its only script element.
    page = service.client.get("/ui/").text.replace(
        '<script src="/ui/assets/fleet.js" defer="defer"></script>', "", 1)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in page


def test_a_session_ends_with_its_token_a_forged_cookie_or_logout(service: Service) -> None:
    token = admin_token(service.home)
    client = service.client
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    _login(service, token)
    cookie = client.cookies[session.COOKIE]
    ident, expires, mac = cookie.split(".")
    for forged in (f"{ident}.{int(expires) + 60}.{mac}", f"{'0' * 16}.{expires}.{mac}"):
        client.cookies.set(session.COOKIE, forged, path="/ui")
        assert client.get("/ui/", follow_redirects=False).status_code == 303, forged
    client.cookies.set(session.COOKIE, cookie, path="/ui")
    page = client.get("/ui/").text
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    # Logout needs the session's form token: without it, or another's, refused.
    for body in ("", "csrf=" + "0" * 64, "csrf=x&csrf=y"):
        answer = client.post("/ui/logout", content=body, headers=FORM, follow_redirects=False)
        assert answer.status_code == 403, body
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert csrf is not None
    answer = client.post("/ui/logout", content=f"csrf={csrf.group(1)}", follow_redirects=False,
                         headers={**FORM, "origin": "https://evil.example"})
    assert answer.status_code == 403
    answer = client.post("/ui/logout", content=f"csrf={csrf.group(1)}", headers=FORM,
                         follow_redirects=False)
    assert answer.status_code == 303
    cleared = answer.headers["set-cookie"]
    assert cleared.startswith(f'{session.COOKIE}=""') and "Max-Age=0" in cleared
    # Revoking the token ends a session made with it (a copied cookie too).
    client.cookies.clear()
    _login(service, token)
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    with Store.open(service.url) as store:
        assert tokens.revoke(store, ident, 1)
    assert client.get("/ui/", follow_redirects=False).status_code == 303


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the test reads each 303 itself


def _http(base: str, path: str, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(f"{base}{path}", data=data,  # noqa: S310 - loopback
                                     headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read().decode()


def test_attest_serve_with_two_workers_serves_the_console(rig: Rig) -> None:
    # Two worker processes: a session one of them made is good at the other (the key
    # comes from the store's shared challenge key, not from a process).
    home = rig.tmp / "verifier"
    policy = policy_file(rig, nonce=NonceMode.REQUIRED)
    said: list[str] = []
    with served(policy, home, "--workers", "2", said=said) as base:
        token = admin_token(home)
        nonce = json.loads(_http(base, "/v1/challenges", b"{}",
                                 {"content-type": "application/json"})[2])["nonce"]
        artifact = rig.issue(nonce=nonce).decode()
        verdict = _http(base, "/v1/verify", json.dumps({"artifact": artifact}).encode(),
                        {"content-type": "application/json"})
        assert json.loads(verdict[2])["accepted"], verdict
        status, _, page = _http(base, "/ui/login", b"token=wrong", FORM)
        assert status == 401 and "not a token in force" in page
        status, headers, _ = _http(base, "/ui/login", f"token={token}".encode(), FORM)
        assert status == 303 and headers["location"] == "/ui/"
        cookie = headers["set-cookie"].split(";")[0]
        assert token not in cookie
        pages = [_http(base, "/ui/", headers={"cookie": cookie}) for _ in range(6)]
        for status, _, page in pages:
            assert status == 200 and 'data-host="web-1" data-state="trusted"' in page
            assert token not in page
        assert _http(base, "/ui/")[0] == 303  # no cookie, no page
    # Where the console is, on its own line after the address scripts read.
    assert f"attest: operator console on {base}/ui/ (sign in with a token" in said[1], said


def test_the_fleet_filter_pages_through_a_large_fleet(service: Service) -> None:
    # 450 hosts, every third untrusted: 150, two pages of the filter, each read over
    # several pages of hosts. Each page holds only that state, at most a page of it, and
    # following "Next page" shows each such host exactly once.
    now = int(time.time())
    with Store.open(service.url) as store, store.write() as tx:
        for n in range(450):
            tx.execute("INSERT INTO host_decisions (host, accepted, reasons, decided_at, "
                       "audit_index, accepted_at, accepted_index) "
                       "VALUES (:h, :a, :r, :t, 0, :t, 0)",
                       {"h": f"h{n:03d}", "a": int(n % 3 != 0),
                        "r": "" if n % 3 else "replayed", "t": now})
    _login(service, admin_token(service.home))
    seen: list[str] = []
    pages = 0
    path: str | None = "/ui/?state=untrusted"
    while path is not None:
        pages += 1
        page = service.client.get(path).text
        rows = re.findall(r'data-host="([^"]+)" data-state="([a-z]+)"', page)
        assert 0 < len(rows) <= 100 and {s for _, s in rows} == {"untrusted"}
        seen += [h for h, _ in rows]
        found = re.search(r'<a href="(/ui/\?[^"]+)">Next page</a>', page)
        path = None if found is None else found.group(1).replace("&amp;", "&")
    assert seen == [f"h{n:03d}" for n in range(0, 450, 3)] and pages == 2


def test_a_refusal_on_a_console_address_is_a_page_not_json(service: Service) -> None:
    # A bad query, an unknown console address and an unknown asset are pages (escaped,
    # with the console's headers); the API's refusals stay JSON.
    _login(service, admin_token(service.home))
    bad = service.client.get("/ui/?state=%3Cscript%3E")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "query parameter state" in bad.text and "<script" not in bad.text
    assert bad.headers["content-security-policy"].startswith("default-src 'none'")
    missing = service.client.get("/ui/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    api = service.client.get("/v1/no-such-thing")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_the_rate_limit_leaves_the_consoles_assets_alone() -> None:
    # A burst of one: the stylesheet and scripts never use it up, a page does.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from attest.server.limits import RateLimit, RateLimiter

    async def ok(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{rest:path}", ok)])
    client = TestClient(RateLimit(app, RateLimiter(0.001, 1)))
    assert [client.get("/ui/assets/console.css").status_code for _ in range(5)] == [200] * 5
    assert [client.get("/ui/").status_code for _ in range(2)] == [200, 429]
    assert client.get("/ui/assets/../").status_code == 429


def test_the_consoles_event_stream_needs_a_session_and_ends_with_its_token(
        service: Service) -> None:
    # /ui/events is /v1/events under the session cookie: none, no stream; an open stream
    # sends a change of trust, and once its token is revoked it ends at the next poll,
    # before a later change is sent.
    client = service.client
    assert client.get("/ui/events").status_code == 401
    _login(service, admin_token(service.home))
    stream = listen(client, "/ui/events")
    with Store.open(service.url) as store:
        store.revoke_host("web-before", "retired", int(time.time()))
        assert stream.saw("web-before")
        assert any(line.startswith("data:") and "web-before" in line for line in stream.lines)
        ident = client.cookies[session.COOKIE].split(".")[0]
        assert tokens.revoke(store, ident, int(time.time()))
        store.revoke_host("web-after", "retired", int(time.time()))
    assert stream.ended()
    assert not any("web-after" in line for line in stream.lines)


def test_every_console_answer_carries_the_consoles_headers(service: Service) -> None:
    """Signed in or not, a page, a refusal, an error page, a redirect, an asset or a
    stream: each answer under /ui/ sends the CSP (no inline script, no framing), nosniff,
    the referrer policy and, for old browsers that ignore frame-ancestors, X-Frame-Options
    (the revoke confirmation is one click: no page may frame it)."""
    client = service.client
    paths = ["/ui/", "/ui/login", "/ui/hosts/web-1", "/ui/decisions", "/ui/lineage",
             "/ui/lineage/a.b/revoke", "/ui/audit", "/ui/nope", "/ui/assets/console.css",
             "/ui/assets/nope.css", "/ui/events?timeout=0", "/ui/decisions/stream?timeout=0",
             "/ui/?state=nope"]
    for signed in (False, True):
        if signed:
            assert _login(service, admin_token(service.home)).status_code == 303
        answers = [client.get(path, follow_redirects=False) for path in paths]
        answers += [client.post(path, content="x=1", headers=FORM, follow_redirects=False)
                    for path in ("/ui/login", "/ui/logout", "/ui/audit/receipt",
                                 "/ui/lineage/a.b/revoke", "/ui/")]
        for answer in answers:
            said = (signed, answer.request.method, answer.request.url.path, answer.status_code)
            headers = answer.headers
            assert headers["content-security-policy"].startswith("default-src 'none'"), said
            assert "frame-ancestors 'none'" in headers["content-security-policy"], said
            assert headers["x-content-type-options"] == "nosniff", said
            assert headers["referrer-policy"] == "same-origin", said
            assert headers.get("x-frame-options") == "DENY", said


def test_a_post_a_browser_marks_cross_site_is_refused_even_without_an_origin(
        service: Service) -> None:
    """Attack: a login (or any form) posted from another site by a browser or an
    extension that leaves Origin out. Browsers also say where a request came from in
    Sec-Fetch-Site: a form of another site (or of a sibling subdomain) is refused."""
    token = admin_token(service.home)
    for where in ("cross-site", "same-site"):
        answer = service.client.post("/ui/login", content=f"token={token}",
                                     headers={**FORM, "sec-fetch-site": where},
                                     follow_redirects=False)
        assert answer.status_code == 403, where
        assert session.COOKIE not in answer.headers.get("set-cookie", "")
    for where in ("same-origin", "none"):  # the console's own form; typed by hand
        answer = service.client.post("/ui/login", content=f"token={token}",
                                     headers={**FORM, "sec-fetch-site": where},
                                     follow_redirects=False)
        assert answer.status_code == 303, where
