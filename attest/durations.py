"""Durations as people write them, for the policy file and every command-line option.

One syntax: whole seconds (``300``) or a sum of units, each at most once, in any order
(``300s``, ``5m``, ``1h30m``, ``2d``, ``250ms``, ``1s500ms``). No decimals, signs or
spaces inside (``1.5s`` is ``1s500ms``). Three readers of the one grammar:
:func:`parse_duration` (whole seconds: a lifetime, a TTL; ``1500ms`` is refused rather
than rounded), :func:`parse_seconds` (a period that may be shorter than a second:
``--interval 500ms``), :func:`parse_duration_ms` under both. The bounds are the caller's;
the error is ValueError with one wording for every caller, which each turns into its own
(the policy loader names the line, the CLI exits 2 with :func:`range_hint`).
"""

from __future__ import annotations

import re

# "ms" before "m": a regex alternation takes the first that matches.
_DURATION = re.compile(r"(?:\d+(?:ms|d|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
# Ten years: more than any freshness window or lifetime a policy means; small enough that
# now + the duration fits a time_t, a datetime and an SQLite integer.
MAX_DURATION_S = 3650 * 86400
DURATION_SYNTAX = "a duration like 90s, 5m, 1h30m, 250ms or whole seconds (90)"


def parse_duration_ms(text: str, *, minimum_ms: int = 0,
                      maximum_ms: int = MAX_DURATION_S * 1000) -> int:
    """Milliseconds from any form the module names, from ``minimum_ms`` to ``maximum_ms``
    (at most :data:`MAX_DURATION_S`); ValueError otherwise."""
    maximum_ms = min(maximum_ms, MAX_DURATION_S * 1000)
    text = text.strip()
    if text.isdigit() and text.isascii():
        total = _bounded_int(text, text, maximum_ms) * 1000
    elif not text.isascii() or not _DURATION.fullmatch(text):
        raise ValueError(f"expected {DURATION_SYNTAX}, not {_excerpt(text)}")
    else:
        parts = _DURATION_PART.findall(text)
        if len({unit for _, unit in parts}) != len(parts):
            raise ValueError(f"a unit appears twice in {_excerpt(text)}; "
                             f"expected {DURATION_SYNTAX}")
        total = sum(_bounded_int(number, text, maximum_ms) * _UNIT_MS[unit]
                    for number, unit in parts)
    if total > maximum_ms:
        raise ValueError(f"{_excerpt(text)} is longer than the longest duration, "
                         f"{_longest(maximum_ms)}")
    if total < minimum_ms:
        raise ValueError(f"{_excerpt(text)} is shorter than the shortest duration, "
                         f"{format_duration_ms(minimum_ms)}")
    return total


def parse_duration(text: str, *, minimum: int = 0, maximum: int = MAX_DURATION_S) -> int:
    """Whole seconds from ``300``, ``300s``, ``5m``, ``1h30m``, ``2d``, ``2000ms``, from
    ``minimum`` to ``maximum``; a part of a second (``1500ms``) is refused, not rounded."""
    total = parse_duration_ms(text, minimum_ms=minimum * 1000, maximum_ms=maximum * 1000)
    if total % 1000:
        raise ValueError(f"{_excerpt(text.strip())} is not a whole number of seconds; "
                         "this duration takes whole seconds, e.g. 90s or 2m")
    return total // 1000


def parse_seconds(text: str, *, minimum: float, maximum: float) -> float:
    """Seconds, to the millisecond, from any form (``500ms``, ``2s``, ``1m``, ``2``),
    from ``minimum`` to ``maximum`` seconds."""
    return parse_duration_ms(text, minimum_ms=round(minimum * 1000),
                             maximum_ms=round(maximum * 1000)) / 1000


def range_hint(minimum_ms: int, maximum_ms: int, *, whole_seconds: bool = True) -> str:
    """The hint every command prints under a refused duration: examples of the forms the
    option takes (no milliseconds where only whole seconds are), and its range."""
    examples = "90s, 5m or 1h30m" if whole_seconds else "250ms, 2s or 1m"
    return (f"write e.g. {examples}; from {format_duration_ms(minimum_ms)} "
            f"to {format_duration_ms(maximum_ms)}")


def _bounded_int(digits: str, text: str, maximum_ms: int) -> int:
    # int() of a few thousand digits raises (Python's digit limit), of fewer it may
    # overflow a time_t or SQLite once added to a timestamp: refuse long numbers first.
    if len(digits) > 12:
        raise ValueError(f"{_excerpt(text)} is longer than the longest duration, "
                         f"{_longest(maximum_ms)}")
    return int(digits)


def format_duration(seconds: int) -> str:
    """The shortest exact form parse_duration reads back: 600 -> '10m', 90 -> '90s'."""
    return format_duration_ms(seconds * 1000)


def format_duration_ms(milliseconds: int) -> str:
    """The shortest exact one-unit form: 600000 -> '10m', 1500 -> '1500ms', 0 -> '0s'."""
    if milliseconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        if milliseconds % _UNIT_MS[unit] == 0:
            return f"{milliseconds // _UNIT_MS[unit]}{unit}"
    return f"{milliseconds}ms"


def _longest(maximum_ms: int) -> str:
    day = _UNIT_MS["d"]
    return f"{maximum_ms // day}d" if maximum_ms % day == 0 else format_duration_ms(maximum_ms)


def _excerpt(text: str, limit: int = 24) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
