"""The operator console in headless chromium against a real `attest serve` on loopback,
its host on swtpm (issue 17): sign in through the form, watch a host turn untrusted
without a reload, a decision arrive live, a lineage tree of depth 3, a revocation
previewed then confirmed, a receipt from a real /v1/verify answer checked; the keyboard
reaches the navigation and the fields, focus visible; every page fits 1280x800; hostile
text from the store, rendered or streamed, stays text; a screenshot of each page; no
console error on any page (tests/browser/conftest.py).

One service for the module. The test that makes the host untrusted runs last: after it
the host's artifacts are denied, which the tests before it need accepted.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from attest.store import Store, default_url, events
from tests.browser.conftest import WAIT_S, Served, shoot, skip_without_browser
from tests.verify.rig import HOST_ID

skip_without_browser()  # before selenium is imported: a missing one skips the module

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    # Missing yet required (ATTEST_REQUIRE_BROWSER=1): each test fails in its fixture,
    # saying so, and the rest of the suite still runs.
    pass

pytestmark = [pytest.mark.browser, pytest.mark.swtpm]

NAV = {"Fleet": "/ui/", "Decisions": "/ui/decisions", "Lineage": "/ui/lineage",
       "Audit": "/ui/audit"}


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT_S)


def _one(driver: WebDriver | WebElement, css: str) -> WebElement:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    assert len(found) == 1, f"{css}: {len(found)} elements"
    return found[0]


def _sign_in(driver: WebDriver, console: Served) -> None:
    """Through the login form, unless this browser already has a session."""
    driver.get(f"{console.base}/ui/")
    if driver.current_url.endswith("/ui/login"):
        _one(driver, "input#token").send_keys(console.token)
        _one(driver, "form button[type=submit]").click()
        _wait(driver).until(lambda d: d.current_url == f"{console.base}/ui/")


def _page_is(driver: WebDriver, title: str) -> None:
    """The frame every page has: the h1 and the console's navigation, its links as the
    DOM contract names them."""
    assert title in _one(driver, "h1").text
    nav = _one(driver, 'nav[aria-label="Console"]')
    links = {a.text: a.get_attribute("href") for a in nav.find_elements(By.TAG_NAME, "a")}
    base = driver.current_url.split("/ui", 1)[0]
    assert {label: links.get(label) for label in NAV} == {
        label: base + path for label, path in NAV.items()}
    # Readable on a 1280x800 laptop screen: nothing wider than the window.
    widths = driver.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.clientWidth];")
    assert widths[0] <= widths[1], f"{title}: {widths[0]}px wide in a {widths[1]}px window"


def _mark_page(driver: WebDriver) -> None:
    """A flag on the page's window: gone if the page reloads or navigates."""
    driver.execute_script("window.attestTestMark = 'kept';")


def _still_same_page(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.attestTestMark === 'kept';"))


def _claims(token: str) -> dict[str, Any]:
    """The claims of a JWT (a /v1/verify answer's ``result``), unchecked: the page checks."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def _tab_stops(driver: WebDriver, stops: int) -> list[str]:
    """What Tab focuses, from the top of the page, ``stops`` times: each element as its
    id, or its link's path, or its tag. Keys sent to the focused element, as a person
    pressing Tab."""
    driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur();")
    base = driver.current_url.split("/ui", 1)[0]
    seen = []
    for _ in range(stops):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        here = driver.switch_to.active_element
        href = here.get_attribute("href")
        seen.append(here.get_attribute("id") or
                    (href.removeprefix(base) if href else here.tag_name))
    return seen


def _only_refused(driver: WebDriver, path: str, status: int) -> None:
    """The browser's console so far holds exactly the refusal a test asked for (the
    browser logs a 4xx answer as an error): read here, so that the check after the test
    sees only what came after it."""
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert len(severe) == 1 and path in severe[0] and f"status of {status}" in severe[0], \
        severe


def _states(driver: WebDriver) -> dict[str, str]:
    return {li.get_attribute("data-jti") or "": li.get_attribute("data-state") or ""
            for li in driver.find_elements(By.CSS_SELECTOR, "ul.tree li[data-jti]")}


def test_signing_in_through_the_form_shows_the_fleet(
        browser: WebDriver, served_console: Served, screenshots: Path) -> None:
    base = served_console.base
    browser.delete_all_cookies()
    browser.get(f"{base}/ui/")
    assert browser.current_url == f"{base}/ui/login"  # no session: the form
    shoot(browser, screenshots, "login")
    # A wrong token: the form again, with the refusal as text, no session.
    _one(browser, "input#token").send_keys("attest_wrong_token")
    _one(browser, "form button[type=submit]").click()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    assert "not a token in force" in _one(browser, "[role=alert]").text
    _only_refused(browser, "/ui/login", 401)
    assert browser.get_cookies() == []
    browser.get(f"{base}/ui/")
    assert browser.current_url == f"{base}/ui/login"
    _sign_in(browser, served_console)
    _page_is(browser, "Fleet")
    cookie = [c for c in browser.get_cookies() if c["name"] == "attest_console"]
    assert len(cookie) == 1 and cookie[0]["httpOnly"] is True and cookie[0]["path"] == "/ui"
    assert served_console.token not in cookie[0]["value"]
    assert served_console.token not in browser.page_source
    row = _one(browser, f'table#fleet tr[data-host="{HOST_ID}"]')
    assert row.get_attribute("data-state") == "trusted"
    assert _one(row, "span.state").text == "trusted"
    shoot(browser, screenshots, "fleet")


def test_the_keyboard_reaches_the_navigation_and_the_form_fields(
        browser: WebDriver, served_console: Served) -> None:
    base = served_console.base

    browser.delete_all_cookies()
    browser.get(f"{base}/ui/login")
    stops = _tab_stops(browser, 3)
    assert "token" in stops and "button" in stops, stops
    _sign_in(browser, served_console)
    stops = _tab_stops(browser, 12)
    assert set(NAV.values()) <= set(stops), stops
    assert "state" in stops, stops  # the fleet's filter
    # Focus is visible: the focused element is outlined (a keyboard user sees where it is).
    for css in ('nav a[href="/ui/decisions"]', "select#state"):
        browser.execute_script("arguments[0].focus();", _one(browser, css))
        outline = browser.execute_script(
            "const s = getComputedStyle(document.activeElement);"
            "return [s.outlineStyle, parseFloat(s.outlineWidth)];")
        assert outline[0] != "none" and outline[1] > 0, (css, outline)
    # Enter on a focused link follows it: the navigation works without a mouse.
    _mark_page(browser)
    browser.find_element(By.CSS_SELECTOR, 'nav a[href="/ui/"]').send_keys(Keys.ENTER)
    _wait(browser).until(lambda d: not _still_same_page(d))
    _page_is(browser, "Fleet")


def test_a_hosts_page_shows_its_trust_decisions_and_measurements(
        browser: WebDriver, served_console: Served, screenshots: Path) -> None:
    assert served_console.verify(served_console.issue())["accepted"] is True
    _sign_in(browser, served_console)
    link = _one(browser, f'table#fleet tr[data-host="{HOST_ID}"] a')
    assert link.get_attribute("href") == (
        f"{served_console.base}/ui/hosts/{quote(HOST_ID, safe='')}")
    link.click()
    _wait(browser).until(lambda d: "/ui/hosts/" in d.current_url)
    _page_is(browser, HOST_ID)
    assert HOST_ID in _one(browser, "h1").text
    trust = _one(browser, "section#trust").text
    assert re.search(r"(?<!un)trusted", trust) and "untrusted" not in trust, trust
    decisions = _one(browser, "section#decisions")
    assert decisions.find_elements(By.CSS_SELECTOR, "table tbody tr")
    measured = browser.find_elements(By.CSS_SELECTOR, "section#measurements tr[data-pcr]")
    assert measured, "the host's runtime measurement"
    _one(browser, "section#revocations")
    shoot(browser, screenshots, "host")


def test_the_decisions_table_gains_rows_live(
        browser: WebDriver, served_console: Served, screenshots: Path) -> None:
    _sign_in(browser, served_console)
    browser.get(f"{served_console.base}/ui/decisions")
    _page_is(browser, "Decisions")
    for chart in ("figure#chart-hour", "figure#chart-day"):
        svg = _one(browser, f"{chart} svg")
        assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label")
        _one(browser, f"{chart} table")  # the chart's text alternative
    _wait(browser).until(lambda d: _one(d, "p#live").text.strip())
    _mark_page(browser)
    before = len(browser.find_elements(By.CSS_SELECTOR, "table#decisions tbody tr"))
    raw = served_console.issue()
    accepted = served_console.verify(raw)
    assert accepted["accepted"] is True
    denied = served_console.verify(raw)  # the same artifact again: a replay
    assert denied["accepted"] is False

    def grown(driver: WebDriver) -> bool:
        return len(driver.find_elements(By.CSS_SELECTOR, "table#decisions tbody tr")) >= \
            before + 2

    _wait(browser).until(grown)
    assert _still_same_page(browser)  # no reload: the script added the rows
    rows = browser.find_elements(By.CSS_SELECTOR, "table#decisions tbody tr")
    # Newest first: the replay's denial, then the acceptance before it.
    assert [r.get_attribute("data-result") for r in rows[:2]] == ["denied", "accepted"]
    assert "replayed" in rows[0].text and HOST_ID in rows[0].text
    shoot(browser, screenshots, "decisions")


def test_a_lineage_of_depth_three_a_revocation_previewed_then_confirmed(
        browser: WebDriver, served_console: Served, screenshots: Path) -> None:
    root_raw = served_console.issue(ttl=600)
    child_raw = served_console.issue(ttl=300, parent=root_raw)
    leaf_raw = served_console.issue(ttl=120, parent=child_raw)
    jtis = []
    for raw in (root_raw, child_raw, leaf_raw):
        decision = served_console.verify(raw)
        assert decision["accepted"] is True, decision
        jtis.append(decision["jti"])
    root, child, leaf = jtis
    _sign_in(browser, served_console)
    browser.get(f"{served_console.base}/ui/lineage")
    _page_is(browser, "Lineage")
    assert "jti" in _tab_stops(browser, 12)  # the field is reached by keyboard
    _one(browser, "input#jti").send_keys(child)
    _one(browser, "input#jti").submit()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "ul.tree"))
    assert browser.current_url.split("?")[0].rstrip("/").endswith(
        ("/ui/lineage", f"/ui/lineage/{child}"))
    # Nested lists: the leaf inside the child inside the root.
    _one(browser, f'ul.tree li[data-jti="{root}"] li[data-jti="{child}"] '
                  f'li[data-jti="{leaf}"]')
    assert _states(browser) == {root: "accepted", child: "accepted", leaf: "accepted"}
    viewed = _one(browser, f'li[data-jti="{child}"]')
    assert viewed.get_attribute("aria-current") == "true"
    assert _one(browser, f'li[data-jti="{root}"]').get_attribute("aria-current") != "true"
    shoot(browser, screenshots, "lineage")
    _one(browser, "a#revoke").click()
    _wait(browser).until(lambda d: d.current_url.endswith(f"/ui/lineage/{child}/revoke"))
    cut = {li.get_attribute("data-jti") for li in
           browser.find_elements(By.CSS_SELECTOR, "ul#cut li[data-jti]")}
    assert cut == {child, leaf}  # the child and what descends from it, not its parent
    confirm = _one(browser, "form#confirm")
    assert (confirm.get_attribute("method") or "").lower() == "post"
    assert confirm.find_elements(By.CSS_SELECTOR, 'input[type=hidden][name="csrf"]')
    assert "reason" in _tab_stops(browser, 12)
    _one(browser, "input#reason").send_keys("browser test: a compromised build")
    shoot(browser, screenshots, "revoke")
    _one(browser, "form#confirm [type=submit]").click()
    _wait(browser).until(lambda d: d.current_url == (
        f"{served_console.base}/ui/lineage/{child}"))
    assert _states(browser) == {root: "accepted", child: "revoked", leaf: "revoked"}
    # The service agrees: a new child of the revoked artifact is denied.
    orphan = served_console.verify(served_console.issue(ttl=60, parent=child_raw))
    assert orphan["accepted"] is False, orphan


def test_the_audit_page_checks_a_receipt_from_a_verify_answer(
        browser: WebDriver, served_console: Served, screenshots: Path) -> None:
    # A few decisions first, so the receipt's tree has siblings and its path steps.
    for _ in range(2):
        assert served_console.verify(served_console.issue())["accepted"] is True
    decision = served_console.verify(served_console.issue())
    assert decision["accepted"] is True
    receipt = _claims(decision["result"])["submods"]["attest"]["attest.audit"]
    _sign_in(browser, served_console)
    browser.get(f"{served_console.base}/ui/audit")
    _page_is(browser, "Audit")
    head = {dd.get_attribute("data-field"): dd.text
            for dd in browser.find_elements(By.CSS_SELECTOR, "dl#head dd[data-field]")}
    assert set(head) >= {"size", "root", "signed-at", "verified"}, head
    assert int(head["size"]) > decision["audit_index"]
    assert all(head[field].strip() for field in ("root", "signed-at", "verified"))
    shoot(browser, screenshots, "audit")
    assert "receipt-text" in _tab_stops(browser, 16)
    form = _one(browser, "form#receipt")
    assert form.find_elements(By.CSS_SELECTOR, 'input[type=hidden][name="csrf"]')
    _one(browser, "textarea#receipt-text").send_keys(json.dumps(receipt))
    _one(browser, "form#receipt [type=submit]").click()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#receipt-result"))
    assert _one(browser, "#receipt-result").get_attribute("data-valid") == "true"
    path = browser.find_elements(By.CSS_SELECTOR, "ol#path li")
    assert path and all(li.text.strip() for li in path)
    _page_is(browser, "Audit")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});",
                           _one(browser, "#receipt-result"))
    shoot(browser, screenshots, "receipt")
    # One sibling hash changed: the same form says invalid.
    assert receipt["proof"], receipt
    sibling = receipt["proof"][0]
    forged = {**receipt, "proof": [("B" if sibling[0] == "A" else "A") + sibling[1:],
                                   *receipt["proof"][1:]]}
    browser.get(f"{served_console.base}/ui/audit")
    _one(browser, "textarea#receipt-text").send_keys(json.dumps(forged))
    _one(browser, "form#receipt [type=submit]").click()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#receipt-result"))
    assert _one(browser, "#receipt-result").get_attribute("data-valid") == "false"


def test_the_browser_enforces_the_pages_policy_and_the_check_sees_a_violation(
        browser: WebDriver, served_console: Served) -> None:
    """What the console-error check is for: markup that got past escaping and tried to
    run inline script or style would be refused by the page's CSP in the browser, and
    the refusal is an error in its console, which fails a test."""
    _sign_in(browser, served_console)
    browser.execute_script("""
        const s = document.createElement('script');
        s.textContent = 'window.attestInjected = true;';
        document.body.appendChild(s);
        const d = document.createElement('div');
        d.setAttribute('style', 'color: red');
        document.body.appendChild(d);
    """)
    assert browser.execute_script("return window.attestInjected === true;") is False
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert any("Content Security Policy" in m and "script" in m for m in severe), severe


def test_a_hostile_host_id_is_text_in_the_browser(
        browser: WebDriver, served_console: Served) -> None:
    hostile = '<img src=x onerror="window.attestInjected=1">"><script>window.attestInjected=2' \
              '</script>'
    with Store.open(default_url(served_console.home)) as store, store.write() as tx:
        tx.execute("INSERT INTO host_decisions (host, accepted, reasons, decided_at, "
                   "audit_index, accepted_at, accepted_index) VALUES (:h, 0, :r, :t, 0, :t, 0)",
                   {"h": hostile, "r": "</td><b>bold</b>", "t": int(time.time())})
    _sign_in(browser, served_console)
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "table#fleet tr[data-host]")
            if r.get_attribute("data-host") == hostile]
    assert len(rows) == 1
    assert hostile in rows[0].text and "</td><b>bold</b>" in rows[0].text
    assert not browser.find_elements(By.CSS_SELECTOR, "table#fleet img, table#fleet b")
    assert browser.execute_script("return window.attestInjected === undefined;") is True


def test_live_updates_to_the_fleet_are_text_in_the_browser(
        browser: WebDriver, served_console: Served) -> None:
    """Events as the store records them (attest.store.hosttrust writes these), one for a
    host on the page with a hostile reason, one for a hostile host not on it, which the
    page names in its live line: text, nothing inserted, nothing run."""
    hostile = '<i>live-row</i>'
    with Store.open(default_url(served_console.home)) as store, store.write() as tx:
        tx.execute("INSERT INTO host_decisions (host, accepted, reasons, decided_at, "
                   "audit_index, accepted_at, accepted_index) VALUES (:h, 1, '', :t, 0, :t, 0)",
                   {"h": hostile, "t": int(time.time())})
    _sign_in(browser, served_console)
    _wait(browser).until(lambda d: _one(d, "p#live").text.strip())
    _mark_page(browser)
    reason = '<img src=y onerror="window.attestInjected=3">'
    newcomer = '<svg onload="window.attestInjected=4">new-host'
    now = int(time.time())
    with Store.open(default_url(served_console.home)) as store, store.write() as tx:
        for host, reasons in ((hostile, [reason]), (newcomer, [])):
            events.record_event(tx, events.HOST_STATE, host,
                                {"state": "untrusted", "reasons": reasons,
                                 "audit_index": None}, now=now, host=host[:64])

    def hostile_row(driver: WebDriver) -> WebElement:
        found = [r for r in driver.find_elements(By.CSS_SELECTOR, "table#fleet tr[data-host]")
                 if r.get_attribute("data-host") == hostile]
        assert len(found) == 1
        return found[0]

    _wait(browser).until(lambda d: reason in hostile_row(d).text)
    _wait(browser).until(lambda d: newcomer in _one(d, "p#live").text)
    assert hostile_row(browser).get_attribute("data-state") == "untrusted"
    assert _still_same_page(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, "table#fleet i, main img, main svg")
    assert browser.execute_script("return window.attestInjected === undefined;") is True


def test_a_host_turns_untrusted_on_the_open_fleet_page_without_a_reload(
        browser: WebDriver, served_console: Served) -> None:
    # Last in the module: the host stays untrusted, its artifacts denied, from here on.
    # An accepted decision first: the fleet shows a host's last decision, and earlier
    # tests left denials (a replay, a child of a revoked artifact).
    assert served_console.verify(served_console.issue())["accepted"] is True
    _sign_in(browser, served_console)
    row_css = f'table#fleet tr[data-host="{HOST_ID}"]'
    assert _one(browser, row_css).get_attribute("data-state") == "trusted"
    # The page says where its live updates start, and says so as text.
    assert int(_one(browser, "table#fleet").get_attribute("data-cursor") or "x") >= 0
    assert _one(browser, "p#live").get_attribute("aria-live") == "polite"
    _wait(browser).until(lambda d: _one(d, "p#live").text.strip())
    _mark_page(browser)
    # What `attest agent` would send after something unexpected ran on the host: a
    # measurement no reference value allows, in a report the TPM quoted.
    served_console.rig.host.ok("measure", "command", "--", "cat")
    report = served_console.report()
    assert report["accepted"] is False and report["reasons"] == ["reference_value_mismatch"]
    assert report["host_state"]["state"] == "untrusted"
    _wait(browser).until(
        lambda d: _one(d, row_css).get_attribute("data-state") == "untrusted")
    assert _still_same_page(browser)  # the script changed the row; no reload
    row = _one(browser, row_css)
    state = _one(row, "span.state")
    assert state.text == "untrusted"  # the state as a word, not only a colour
    assert set((state.get_attribute("class") or "").split()) == {"state", "state-untrusted"}
    assert "reference_value_mismatch" in row.text
