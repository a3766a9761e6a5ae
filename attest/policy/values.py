"""The policy file's small value syntaxes: durations, hex, names and match patterns.

Each parser takes the text as written and returns the value or raises
ValueError with a message the loader places at the value's line.
"""

from __future__ import annotations

import re

from attest.patterns import ShellPattern

_DURATION = re.compile(r"^(?:\d+[dhms])+$")
_DURATION_PART = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Ten years: more than any freshness window or lifetime a policy means; small enough that
# now + the duration fits a time_t, a datetime and an SQLite integer.
MAX_DURATION_S = 3650 * 86400
DURATION_SYNTAX = "a duration like 300s, 5m, 1h or 1h30m (or whole seconds)"
# Policy ids travel in the signed "policy" claim of an artifact issued under a policy
# (and in denial messages); audit entries carry the verifier id, not the policy id.
_POLICY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_HOST_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")


def parse_duration(text: str) -> int:
    """Seconds from ``300``, ``300s``, ``5m``, ``1h``, ``2d`` or a sum like ``1h30m``,
    at most :data:`MAX_DURATION_S`."""
    text = text.strip()
    if text.isdigit() and text.isascii():
        seconds = _bounded_int(text)
    elif not _DURATION.match(text):
        raise ValueError(f"expected {DURATION_SYNTAX}")
    else:
        parts = _DURATION_PART.findall(text)
        if len({unit for _, unit in parts}) != len(parts):
            raise ValueError(f"a unit appears twice in {text!r}; expected {DURATION_SYNTAX}")
        seconds = sum(_bounded_int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{_excerpt(text)} is longer than the longest duration, "
                         f"{MAX_DURATION_S // 86400}d")
    return seconds


def _bounded_int(digits: str) -> int:
    # int() of a few thousand digits raises (Python's digit limit), of fewer it may
    # overflow a time_t or SQLite once added to a timestamp: refuse long numbers first.
    if len(digits) > 12:
        raise ValueError(f"{_excerpt(digits)} is longer than the longest duration, "
                         f"{MAX_DURATION_S // 86400}d")
    return int(digits)


def format_duration(seconds: int) -> str:
    """The shortest exact form parse_duration reads back: 600 -> '10m', 90 -> '90s'."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def parse_hex(text: str, *, size: int | None = None, what: str = "hex") -> bytes:
    """Bytes from hex digits (no 0x, no separators); exactly ``size`` bytes when given."""
    digits = text.strip()
    if digits.lower().startswith("0x"):
        raise ValueError(f"expected {what} as hex digits without a 0x prefix")
    if any(c.isspace() for c in digits):
        raise ValueError(f"expected {what} as hex digits without spaces")
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"expected {what} as hex digits; {_excerpt(digits)} is not hex") from None
    if size is not None and len(value) != size:
        raise ValueError(f"expected {what} of {size} bytes ({2 * size} hex digits), "
                         f"found {len(value)} bytes")
    return value


def check_policy_id(text: str) -> str:
    if not _POLICY_ID.match(text):
        raise ValueError("a policy id is 1-128 letters, digits, '.', '_', ':' or '-', "
                         "starting with a letter or digit")
    return text


def check_host_id(text: str) -> str:
    if not _HOST_ID.match(text):
        raise ValueError("a host id is 1-255 characters without spaces or control characters")
    return text


def check_pattern(pattern: str) -> str:
    """A shell-style (fnmatch) pattern that means what it looks like.

    fnmatch reads an unclosed ``[`` as a literal character; in a rule that is
    almost always a typo that would silently match nothing, so it is refused.
    """
    if not pattern:
        raise ValueError("an empty pattern matches only an empty string; write '*' for anything")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
        raise ValueError("a pattern may not contain control characters")
    index = 0
    while index < len(pattern):
        if pattern[index] == "[":
            close = _bracket_end(pattern, index)
            if close < 0:
                raise ValueError(f"unclosed '[' at position {index + 1} in {pattern!r}; "
                                 "write [[] for a literal '['")
            index = close
        index += 1
    ShellPattern(pattern)  # within the bounds that keep matching linear, or ValueError
    return pattern


def _bracket_end(pattern: str, start: int) -> int:
    """Index of the ']' closing the set opened at ``start``, as fnmatch reads it; else -1."""
    index = start + 1
    if index < len(pattern) and pattern[index] == "!":
        index += 1
    # A ']' right after '[' or '[!' is a member of the set, not its end.
    if index < len(pattern) and pattern[index] == "]":
        index += 1
    return pattern.find("]", index)


def _excerpt(text: str, limit: int = 24) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
