"""The browser tests' gate (tests/browser/conftest.py): without chromium, its driver or
selenium they skip and say which is missing, except under ATTEST_REQUIRE_BROWSER=1, where
they fail: CI must not pass by skipping them. Runs with no browser at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import conftest


def test_a_missing_browser_skips_saying_what_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATTEST_REQUIRE_BROWSER", raising=False)
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        conftest.require_browser()
    monkeypatch.setattr(conftest, "CHROMIUM", Path(__file__))  # present: the driver next
    monkeypatch.setattr(conftest, "CHROMEDRIVER", tmp_path / "chromedriver")
    with pytest.raises(pytest.skip.Exception, match="chromium-driver"):
        conftest.require_browser()


def test_a_missing_browser_fails_when_it_is_required(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTEST_REQUIRE_BROWSER", "1")
    monkeypatch.setattr(conftest, "CHROMEDRIVER", tmp_path / "chromedriver")
    with pytest.raises(pytest.fail.Exception, match="ATTEST_REQUIRE_BROWSER=1 but"):
        conftest.require_browser()


def test_only_the_exact_value_requires_it(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    # Anything but "1" (empty, "0", "yes") leaves the skip: one spelling, as .ci/run sets.
    monkeypatch.setattr(conftest, "CHROMEDRIVER", tmp_path / "chromedriver")
    for value in ("", "0", "yes"):
        monkeypatch.setenv("ATTEST_REQUIRE_BROWSER", value)
        with pytest.raises(pytest.skip.Exception):
            conftest.require_browser()


def test_at_import_a_required_missing_browser_neither_skips_nor_stops_the_run(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The module-level gate: required, it lets the module load (its tests then fail
    # one by one in their fixture); a failure at import would stop the whole collection.
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setenv("ATTEST_REQUIRE_BROWSER", "1")
    conftest.skip_without_browser()
    monkeypatch.delenv("ATTEST_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        conftest.skip_without_browser()


def test_a_missing_selenium_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", Path(__file__))
    monkeypatch.setattr(conftest, "CHROMEDRIVER", Path(__file__))
    monkeypatch.setattr(conftest.importlib.util, "find_spec",
                        lambda name: None if name == "selenium" else object())
    assert conftest.missing() == "selenium is not installed (the dev extra)"
