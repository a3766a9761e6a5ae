"""Times for people: ISO 8601 UTC and a rounded distance, never epoch seconds."""

from __future__ import annotations

import pytest

from attest import timetext

T = 1_796_000_000  # 2026-11-30T00:53:20Z


@pytest.mark.parametrize(("epoch", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (T, "2026-11-30T00:53:20Z"),
    (T + 0.9, "2026-11-30T00:53:20Z"),  # whole seconds: a JWT's times are integers
    (10**30, "1000000000000000000000000000000 (seconds since 1970)"),  # hostile exp
    (-(10**30), "-1000000000000000000000000000000 (seconds since 1970)"),
])
def test_iso(epoch: float, text: str) -> None:
    assert timetext.iso(epoch) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (45, "45 s"), (89, "89 s"), (90, "2 min"), (659, "11 min"),
    (89 * 60, "89 min"), (90 * 60, "1 h 30 min"), (3 * 3600, "3 h"),
    (47 * 3600 + 59 * 60, "47 h 59 min"), (48 * 3600, "2 d"), (52 * 3600, "2 d 4 h"),
    (-659, "11 min"),
])
def test_about(seconds: int, text: str) -> None:
    assert timetext.about(seconds) == text


@pytest.mark.parametrize(("epoch", "text"), [
    (T - 660, "11 min ago"), (T + 300, "in 5 min"), (T, "now"), (T + 0.5, "now"),
    (T - 31, "31 s ago"),
])
def test_relative(epoch: float, text: str) -> None:
    assert timetext.relative(epoch, T) == text


def test_moment() -> None:
    assert timetext.moment(T - 660, T) == "2026-11-30T00:42:20Z (11 min ago)"
