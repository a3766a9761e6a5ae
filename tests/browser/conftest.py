"""The console in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromium-driver, against one real `attest serve` on loopback per module whose
host issues on a swtpm of its own.

Without chromium, chromium-driver or selenium the tests skip and say which is missing;
with ATTEST_REQUIRE_BROWSER=1 (.ci/run sets it) they fail instead, so CI never passes by
skipping them. Every test ends by reading the browser's console log: any SEVERE entry
(a script error, a CSP violation, a failed load) fails it. Screenshots go to
$ATTEST_SCREENSHOTS when set (scripts/screenshots: docs/console/), else the test's tmp
directory.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from attest.policy import NonceMode, Rule
from attest.simulator import Simulator
from tests.conftest import Host
from tests.server.serving import admin_token, call, policy_file, served
from tests.verify.rig import Rig

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH, HEIGHT = 1280, 800
# How long a wait for the page to change may take before the test fails. Generous: two
# cores shared with other work; the waits end as soon as the condition holds.
WAIT_S = 30
# Runs and reports are both allowed: the module's host reports (so its state moves) and
# issues artifacts to run.
RULES = (Rule(("*",), ("exec",), ("*",), ("*",)), Rule(("*",), ("report",), ("*",), ("*",)))
# Far longer than the module runs: the host never goes stale while the tests look at it.
REPORT_MAX_AGE = 3600
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}")


def missing() -> str | None:
    """What the browser tests lack on this machine, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (Debian's chromium)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} not found (Debian's chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (the dev extra)"
    return None


@dataclass
class Served:
    """The service the browser looks at, and the host that feeds it."""

    base: str  # http://127.0.0.1:PORT
    token: str  # an admin token, typed into the login form
    rig: Rig
    home: Path

    def nonce(self) -> str:
        nonce: str = call(self.base, "/v1/challenges", {})["nonce"]
        return nonce

    def issue(self, **request: Any) -> bytes:
        return self.rig.issue(nonce=self.nonce(), **request)

    def verify(self, raw: bytes) -> dict[str, Any]:
        """POST /v1/verify: the decision (accepted or denied)."""
        decision: dict[str, Any] = call(self.base, "/v1/verify", {"artifact": raw.decode()})
        return decision

    def report(self) -> dict[str, Any]:
        """A report the host makes now (as `attest agent` does), POST /v1/reports."""
        raw = self.rig.issue("agent", action="report", nonce=self.nonce())
        decided: dict[str, Any] = call(self.base, "/v1/reports", {"report": raw.decode()})
        return decided


def required() -> bool:
    """Whether the browser tests must run (.ci/run): exactly ATTEST_REQUIRE_BROWSER=1."""
    return os.environ.get("ATTEST_REQUIRE_BROWSER") == "1"


def skip_without_browser() -> None:
    """Skip (at module level too) when the browser is missing and not required, saying
    what is missing. Never fails: at a module's import a failure would stop the whole
    run's collection; a required browser that is missing fails each test instead
    (:func:`require_browser`, through the fixtures)."""
    reason = missing()
    if reason is not None and not required():
        pytest.skip(reason, allow_module_level=True)


def require_browser() -> None:
    """Skip when the browser is missing, saying what is missing; fail instead under
    ATTEST_REQUIRE_BROWSER=1."""
    skip_without_browser()
    reason = missing()
    if reason is not None:
        pytest.fail(f"ATTEST_REQUIRE_BROWSER=1 but {reason}", pytrace=False)


@pytest.fixture(scope="module")
def browser_ready() -> None:
    require_browser()


@pytest.fixture(scope="module")
def served_console(browser_ready: None, provisioned_template: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`attest serve` on loopback for the module, its one host (web-1) on a swtpm of its
    own, trusted by a first report. One for the module: the service and the browser are
    the slow parts, and the tests read what earlier ones left (more decisions, more
    entries) without depending on it."""
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(provisioned_template, root / "sim")
    sim = Simulator(root / "sim")
    sim.start()
    try:
        host = Host(sim, root / "host")
        host.ok("provision")
        host.ok("key", "create")
        host.ok("measure", "command", "--", "ls")
        rig = Rig(host, root / "rig")
        rig.tmp.mkdir()
        policy = policy_file(rig, nonce=NonceMode.REQUIRED, report_max_age=REPORT_MAX_AGE,
                             rules=RULES)
        home = root / "verifier"
        with served(policy, home) as base:
            console = Served(base, admin_token(home), rig, home)
            first = console.report()
            assert first["accepted"] is True, first
            assert first["host_state"]["state"] == "trusted"
            yield console
        rig.close()
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def driver(served_console: Served, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WebDriver]:
    """Headless chromium at 1280x800 with a fresh profile, its console log kept. Made
    after the service (and so quit before it stops: an open event stream would hold the
    server's shutdown)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path given: selenium's manager, which would download one, never runs.
    made = webdriver.Chrome(options=options,
                            service=DriverService(executable_path=str(CHROMEDRIVER)))
    try:
        made.set_page_load_timeout(WAIT_S)
        # The window's size includes the browser's own frame; the page gets exactly
        # 1280x800, the laptop screen the pages are laid out for (and the screenshots).
        made.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield made
    finally:
        made.quit()


@pytest.fixture
def browser(driver: WebDriver) -> Iterator[WebDriver]:
    """The module's browser for one test, which fails on any console error it caused."""
    driver.get_log("browser")  # what an earlier test left is that test's
    yield driver
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, json.dumps(errors, indent=1)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each page's screenshot goes: $ATTEST_SCREENSHOTS (scripts/screenshots), else
    a tmp directory of the run."""
    named = os.environ.get("ATTEST_SCREENSHOTS")
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def shoot(driver: WebDriver, folder: Path, name: str) -> Path:
    """The viewport as ``folder/name.png`` (1280x800), checked to be a PNG of that size."""
    path = folder / f"{name}.png"
    data = base64.b64decode(driver.get_screenshot_as_base64())
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (WIDTH, HEIGHT), (width, height)
    path.write_bytes(data)
    return path
