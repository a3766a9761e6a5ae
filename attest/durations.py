"""Durations as people write them, for the policy file and the command line alike.

One syntax: whole seconds (``300``) or a sum of units (``300s``, ``5m``, ``1h30m``,
``2d``). The bounds are the caller's; the error is ValueError, which each caller turns
into its own (the policy loader names the line, the CLI exits 2).
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(?:\d+[dhms])+$")
_DURATION_PART = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Ten years: more than any freshness window or lifetime a policy means; small enough that
# now + the duration fits a time_t, a datetime and an SQLite integer.
MAX_DURATION_S = 3650 * 86400
DURATION_SYNTAX = "a duration like 300s, 5m, 1h or 1h30m (or whole seconds)"


def parse_duration(text: str, *, minimum: int = 0, maximum: int = MAX_DURATION_S) -> int:
    """Seconds from ``300``, ``300s``, ``5m``, ``1h``, ``2d`` or a sum like ``1h30m``,
    from ``minimum`` to ``maximum`` (at most :data:`MAX_DURATION_S`)."""
    maximum = min(maximum, MAX_DURATION_S)
    text = text.strip()
    if text.isdigit() and text.isascii():
        seconds = _bounded_int(text, maximum)
    elif not _DURATION.match(text):
        raise ValueError(f"expected {DURATION_SYNTAX}")
    else:
        parts = _DURATION_PART.findall(text)
        if len({unit for _, unit in parts}) != len(parts):
            raise ValueError(f"a unit appears twice in {_excerpt(text)}; "
                             f"expected {DURATION_SYNTAX}")
        seconds = sum(_bounded_int(number, maximum) * _UNIT_SECONDS[unit]
                      for number, unit in parts)
    if seconds > maximum:
        raise ValueError(f"{_excerpt(text)} is longer than the longest duration, "
                         f"{_longest(maximum)}")
    if seconds < minimum:
        raise ValueError(f"{_excerpt(text)} is shorter than the shortest duration, "
                         f"{format_duration(minimum)}")
    return seconds


def _bounded_int(digits: str, maximum: int) -> int:
    # int() of a few thousand digits raises (Python's digit limit), of fewer it may
    # overflow a time_t or SQLite once added to a timestamp: refuse long numbers first.
    if len(digits) > 12:
        raise ValueError(f"{_excerpt(digits)} is longer than the longest duration, "
                         f"{_longest(maximum)}")
    return int(digits)


def format_duration(seconds: int) -> str:
    """The shortest exact form parse_duration reads back: 600 -> '10m', 90 -> '90s'."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def _longest(maximum: int) -> str:
    return f"{maximum // 86400}d" if maximum % 86400 == 0 else format_duration(maximum)


def _excerpt(text: str, limit: int = 24) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
