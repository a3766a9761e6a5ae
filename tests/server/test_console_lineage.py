"""The console's lineage page (attest.console.pages.lineage): an artifact's line and its
descendants as nested lists with each node's state, the revoke preview listing exactly
what the revocation cuts, and the confirmation, refused unless it is the session's own
form, revoking the way POST /v1/revocations does (audit entries naming the admin).

A real host on its own swtpm issues a lineage of depth 3 (and a sibling) that the
service accepts; the service's clock is the test's, so a node expires without waiting.
Pages through FastAPI's TestClient on a real SQLite store.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from attest.console import lineagetree
from attest.policy import NonceMode
from attest.server.app import create_app
from attest.store import RevocationKind, Store, default_url
from attest.store import revocations as revs
from tests.server.serving import admin_token, challenge, verify
from tests.server.test_reports import Clock
from tests.verify.rig import Rig

FORM = {"content-type": "application/x-www-form-urlencoded"}
HOSTILE = '<img src=x onerror="alert(1)">&\'"'


@dataclass
class Line:
    """The service, signed in, with an accepted lineage root > child > grandchild, and
    a second child (``sibling``) of the root that expires first."""

    client: TestClient
    rig: Rig
    url: str
    clock: Clock
    root: str
    child: str
    grandchild: str
    sibling: str

    def store(self) -> Store:
        return self.client.app.state.service.store  # type: ignore[attr-defined,no-any-return]

    def entries(self) -> list[dict[str, Any]]:
        log = self.client.app.state.service.log  # type: ignore[attr-defined]
        return [json.loads(e.data) for e in log.entries()]


def _accept(client: TestClient, rig: Rig, clock: Clock, **request: Any) -> tuple[bytes, str]:
    raw = rig.issue(nonce=challenge(client), now=int(clock.now), **request)
    decision = verify(client, raw)
    assert decision["accepted"] is True, decision["denials"]
    return raw, str(decision["jti"])


@pytest.fixture
def line(rig: Rig) -> Iterator[Line]:
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    clock = Clock(time.time())
    app = create_app(rig.policy(nonce=NonceMode.REQUIRED), url, home, clock=clock)
    token = admin_token(home)
    with TestClient(app) as client:
        root_raw, root = _accept(client, rig, clock, ttl=300)
        child_raw, child = _accept(client, rig, clock, ttl=250, parent=root_raw)
        _, grandchild = _accept(client, rig, clock, ttl=200, parent=child_raw)
        _, sibling = _accept(client, rig, clock, ttl=60, parent=root_raw)
        signed = client.post("/ui/login", content=f"token={token}", headers=FORM,
                             follow_redirects=False)
        assert signed.status_code == 303, signed.text
        yield Line(client, rig, url, clock, root, child, grandchild, sibling)


def _nodes(text: str) -> dict[str, str]:
    """Each tree node's jti and state, as the page's attributes say (escaped values)."""
    return {jti: state for jti, state in
            re.findall(r'<li data-jti="([^"]*)" data-state="([^"]*)"', text)}


def _cut(text: str) -> list[str]:
    listed = re.search(r'<ul id="cut"[^>]*>(.*?)</ul>', text, re.S)
    assert listed is not None, text
    return re.findall(r'data-jti="([^"]*)"', listed.group(1))


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', text)
    assert found is not None, text
    return found.group(1)


def _artifact_revoked(line: Line, jti: str) -> bool:
    with line.store().read() as tx:
        return revs.find(tx, [(RevocationKind.ARTIFACT, jti)]) is not None


def test_a_tree_of_depth_three_shows_its_line_descendants_and_states(line: Line) -> None:
    client = line.client
    form = client.get("/ui/lineage")
    assert form.status_code == 200
    assert '<input id="jti" name="jti"' in form.text and '<label for="jti">' in form.text
    asked = client.get("/ui/lineage", params={"jti": f" {line.child} "},
                       follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == f"/ui/lineage/{quote(line.child, safe='')}"

    line.clock.now += 120  # the sibling (ttl 60) is past its exp; the rest are not
    page = client.get(asked.headers["location"])
    assert page.status_code == 200, page.text
    assert _nodes(page.text) == {line.root: "accepted", line.child: "accepted",
                                 line.grandchild: "accepted"}  # the sibling: not its line
    # Nested: root > child (the one viewed, marked) > grandchild.
    tree = re.search(r'<ul class="tree"[^>]*>(.*)</ul>', page.text, re.S)
    assert tree is not None
    order = re.findall(r'<li data-jti="([^"]*)"|(<ul>)', tree.group(1))
    assert [jti or ul for jti, ul in order] == [line.root, "<ul>", line.child, "<ul>",
                                                line.grandchild]
    assert f'data-jti="{line.child}" data-state="accepted" aria-current="true"' in page.text
    assert page.text.count('aria-current="true"') == 1
    assert 'id="revoke"' in page.text
    assert f'href="/ui/lineage/{quote(line.child, safe="")}/revoke"' in page.text
    assert "deploy-bot on web-1" in page.text
    assert "<script" not in page.text and " style=" not in page.text

    top = client.get(f"/ui/lineage/{quote(line.root, safe='')}")
    assert _nodes(top.text) == {line.root: "accepted", line.child: "accepted",
                                line.grandchild: "accepted", line.sibling: "expired"}
    assert re.search(r'<span class="state state-expired">expired</span>', top.text)


def test_the_preview_lists_exactly_the_cut_and_the_confirm_revokes_it(line: Line) -> None:
    client = line.client
    child = quote(line.child, safe="")
    preview = client.get(f"/ui/lineage/{child}/revoke")
    assert preview.status_code == 200, preview.text
    assert _cut(preview.text) == [line.child, line.grandchild]
    with line.store().read() as tx:  # the computation the revocation makes
        assert [line.child, *revs.descendants(tx, line.child)] == _cut(preview.text)
    assert "cuts 2 artifacts" in preview.text
    assert re.search(rf'<form method="post" action="/ui/lineage/{re.escape(child)}/revoke" '
                     r'id="confirm"', preview.text)
    assert '<label for="reason">' in preview.text and 'id="reason" name="reason"' in preview.text
    assert not _artifact_revoked(line, line.child)  # a preview changes nothing

    confirmed = client.post(f"/ui/lineage/{child}/revoke", headers=FORM,
                            content=f"csrf={_csrf(preview.text)}&reason=key+leaked",
                            follow_redirects=False)
    assert confirmed.status_code == 303, confirmed.text
    assert confirmed.headers["location"] == f"/ui/lineage/{child}"
    assert _artifact_revoked(line, line.child) and _artifact_revoked(line, line.grandchild)
    assert not _artifact_revoked(line, line.root) and not _artifact_revoked(line, line.sibling)
    revoked = [e for e in line.entries() if e["decision"] == "revoked"]
    assert [(e["jti"], e["verifier"], e["reasons"]) for e in revoked] == [
        (line.child, "admin:ops", ["key leaked"]), (line.grandchild, "admin:ops", ["key leaked"])]

    after = client.get(f"/ui/lineage/{child}")
    assert _nodes(after.text) == {line.root: "accepted", line.child: "revoked",
                                  line.grandchild: "revoked"}
    assert "revoked (itself): key leaked" in after.text
    assert "revoked (with its ancestor " in after.text  # the grandchild, by cascade
    # A second preview marks what is revoked already.
    again = client.get(f"/ui/lineage/{child}/revoke")
    assert again.text.count('data-revoked="true"') == 2


def test_a_confirm_that_is_not_the_sessions_own_form_revokes_nothing(line: Line) -> None:
    client = line.client
    path = f"/ui/lineage/{quote(line.root, safe='')}/revoke"
    csrf = _csrf(client.get(path).text)
    good = f"csrf={csrf}&reason=stolen"
    refused = [
        ({}, good),  # not a form
        (FORM, "reason=stolen"),  # no CSRF field
        (FORM, "csrf=&reason=stolen"),
        (FORM, f"csrf={'0' * len(csrf)}&reason=stolen"),  # a wrong one
        (FORM, f"csrf={csrf[:-1]}&reason=stolen"),
        (FORM, f"{good}&csrf={csrf}"),  # twice
        (FORM, f"{good}&extra=1"),
        (FORM, good + "x" * 20_000),  # over the body bound
        ({**FORM, "origin": "https://evil.example"}, good),  # another site's page
        ({**FORM, "origin": "null"}, good),
        ({**FORM, "origin": "http://testserver.evil"}, good),
    ]
    for headers, body in refused:
        answer = client.post(path, headers=headers, content=body, follow_redirects=False)
        assert answer.status_code == 403, (headers, body[:80], answer.status_code)
        assert "nothing was revoked" in answer.text
    # A reason the API would refuse: the preview again, with why.
    for reason in ("", "+++", "x" * 1025, "a%00b", "%ff"):
        answer = client.post(path, headers=FORM, content=f"csrf={csrf}&reason={reason}",
                             follow_redirects=False)
        assert answer.status_code == 422, reason
        assert 'role="alert"' in answer.text and 'id="cut"' in answer.text
    # Another session's token is not this one's.
    other = TestClient(client.app)
    other.post("/ui/login", content=f"token={admin_token(line.rig.tmp / 'verifier')}",
               headers=FORM, follow_redirects=False)
    theirs = _csrf(other.get(path).text)
    assert theirs != csrf
    answer = client.post(path, headers=FORM, content=f"csrf={theirs}&reason=stolen",
                         follow_redirects=False)
    assert answer.status_code == 403
    # No session at all: to the login form, even with a token that was good.
    client.cookies.clear()
    for method in (client.get, client.post):
        kwargs: dict[str, Any] = {"follow_redirects": False}
        if method == client.post:
            kwargs |= {"headers": FORM, "content": good}
        answer = method(path, **kwargs)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    for jti in (line.root, line.child, line.grandchild, line.sibling):
        assert not _artifact_revoked(line, jti), jti
    assert not [e for e in line.entries() if e["decision"] == "revoked"]


def test_hostile_jtis_and_subjects_are_text_and_bad_jtis_are_refused(line: Line) -> None:
    client = line.client
    # A row with markup in its jti, subject and host, under the real grandchild: what a
    # hostile store (or a jti the verifier took as given) could hold.
    with line.store().write() as tx:
        tx.execute("INSERT INTO artifacts (jti, sha256, parent_jti, depth, exp, host, kid, "
                   "ak_name, subject, scope, accepted_at) VALUES (:jti, :sha, :parent, 3, "
                   ":exp, :host, 'aa', 'bb', :subject, '{}', :now)",
                   {"jti": HOSTILE, "sha": "0" * 64, "parent": line.grandchild,
                    "exp": int(line.clock.now) + 60, "host": HOSTILE, "subject": HOSTILE,
                    "now": int(line.clock.now)})
    for path in (f"/ui/lineage/{quote(line.root, safe='')}",
                 f"/ui/lineage/{quote(HOSTILE, safe='')}",
                 f"/ui/lineage/{quote(line.grandchild, safe='')}/revoke"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "<img" not in page.text and 'onerror="' not in page.text
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#x27;&quot;" in page.text
    mine = client.get(f"/ui/lineage/{quote(HOSTILE, safe='')}")
    assert 'aria-current="true"' in mine.text
    assert "/ui/hosts/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%26%27%22" in mine.text
    # Unknown, too long, NUL, empty: 404 page or 422, never a traceback.
    unknown = client.get("/ui/lineage/" + quote("<b>no such<b>", safe=""))
    assert unknown.status_code == 404 and "&lt;b&gt;no such&lt;b&gt;" in unknown.text
    assert "<b>" not in unknown.text
    # A jti with a "/" (the verifier checks only its prefix) has its page at the lookup.
    slashed = client.get("/ui/lineage", params={"jti": "</b>/x"}, follow_redirects=False)
    assert slashed.status_code == 404 and "&lt;/b&gt;/x" in slashed.text
    with line.store().write() as tx:
        tx.execute("INSERT INTO artifacts (jti, sha256, parent_jti, depth, exp, host, kid, "
                   "ak_name, subject, scope, accepted_at) VALUES ('ns./up', :sha, :parent, "
                   "3, :exp, 'web-1', 'aa', 'bb', 'bot', '{}', :now)",
                   {"sha": "0" * 64, "parent": line.grandchild,
                    "exp": int(line.clock.now) + 60, "now": int(line.clock.now)})
    tree = client.get(f"/ui/lineage/{quote(line.grandchild, safe='')}")
    assert 'href="/ui/lineage?jti=ns.%2Fup"' in tree.text
    own = client.get("/ui/lineage?jti=ns.%2Fup", follow_redirects=False)
    assert own.status_code == 200
    assert 'data-jti="ns./up" data-state="accepted" aria-current="true"' in own.text
    assert 'id="revoke"' not in own.text and "POST /v1/revocations" in own.text
    assert client.get("/ui/lineage/nope/revoke").status_code == 404
    answer = client.post("/ui/lineage/nope/revoke", headers=FORM, follow_redirects=False,
                         content=f"csrf={_csrf(unknown.text)}&reason=x")
    assert answer.status_code == 404
    for bad in ("x" * 129, "a%00b"):
        for path in (f"/ui/lineage/{bad}", f"/ui/lineage/{bad}/revoke"):
            answer = client.get(path)
            assert answer.status_code == 422, path
            assert "Traceback" not in answer.text
    assert client.get("/ui/lineage", params={"jti": "x" * 129}).status_code == 422
    assert client.get("/ui/lineage", params={"jti": "a\x00"}).status_code == 422


def test_the_tree_is_bounded_and_says_what_it_leaves_out(line: Line) -> None:
    # Wide and deep rows under the grandchild: more children than a node shows, and a
    # chain deeper than the levels drawn.
    now = int(line.clock.now)
    with line.store().write() as tx:
        def add(jti: str, parent: str) -> None:
            tx.execute("INSERT INTO artifacts (jti, sha256, parent_jti, depth, exp, host, "
                       "kid, ak_name, subject, scope, accepted_at) VALUES (:jti, :sha, "
                       ":parent, 4, :exp, 'web-1', 'aa', 'bb', 'bot', '{}', :now)",
                       {"jti": jti, "sha": "0" * 64, "parent": parent, "exp": now + 60,
                        "now": now})
        for i in range(lineagetree.MAX_CHILDREN + 7):
            add(f"wide-{i:03}", line.grandchild)
        parent = "wide-000"
        for i in range(lineagetree.MAX_LEVELS + 3):
            add(f"deep-{i:03}", parent)
            parent = f"deep-{i:03}"
    page = line.client.get(f"/ui/lineage/{quote(line.grandchild, safe='')}")
    assert page.status_code == 200
    assert "7 more not shown" in page.text
    shown = _nodes(page.text)
    assert sum(1 for j in shown if j.startswith("wide-")) == lineagetree.MAX_CHILDREN
    assert "1 more not shown" in page.text  # the chain, cut at the last level drawn
    assert len(shown) <= lineagetree.MAX_NODES + 3
    preview = line.client.get(f"/ui/lineage/{quote(line.grandchild, safe='')}/revoke")
    total = 1 + lineagetree.MAX_CHILDREN + 7 + lineagetree.MAX_LEVELS + 3
    assert f"cuts {total} artifacts" in preview.text
    assert len(_cut(preview.text)) == total
