"""The one JSON reader for input from outside: one meaning per text, or an error.

Python's json module takes a member twice (the last wins), the constants NaN and
Infinity (also spelled as a number beyond a double's range, 1e400), and nesting
until the interpreter's recursion limit. A signer and a
verifier (or two verifiers) that resolve a duplicate differently read two
different documents from one signed text, so everything attest parses from
outside (artifacts, event logs, audit entries and proofs, verifier answers,
host files) goes through :func:`loads`, which refuses all three with
:class:`StrictJSONError` (a ValueError, so existing ``except ValueError`` keep
catching it).
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any document attest reads (an artifact's payload is 4 deep, a CEL
# record 4, an audit proof 3), far below the interpreter's recursion limit.
MAX_DEPTH = 32


class StrictJSONError(ValueError):
    """A JSON text that is valid for Python's json but has no single meaning."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    made = dict(pairs)
    if len(made) != len(pairs):
        # One pass with a set: names.count per member is quadratic in the object's size,
        # and the sender chooses it (an 8 MiB artifact holds ~10^6 members).
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise StrictJSONError(f"member {name[:64]!r} appears twice in one object")
            seen.add(name)
    return made


def _no_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not JSON (RFC 8259 has no such number)")


def _finite(text: str) -> float:
    # float() makes 1e400 an infinity: the constant refused above, spelled as a number.
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"{text[:64]} is beyond a double's range (RFC 8259, 6)")
    return value


# One decoder: the C scanner with three hooks (a dict per object is built either way;
# parse_float runs only for numbers with a fraction or exponent).
DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constant,
                           parse_float=_finite)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The value of the JSON text ``data`` (UTF-8 when bytes).

    Raises StrictJSONError for a duplicate member, NaN/Infinity or nesting deeper
    than ``max_depth``; ValueError (UnicodeDecodeError, JSONDecodeError) for
    anything else that is not JSON.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        value = DECODER.decode(text)
    except RecursionError:
        # The C scanner counts its recursion: a deep text ends here, not in a crash.
        raise StrictJSONError(f"the JSON nests deeper than {max_depth}") from None
    # The number of brackets bounds the depth, counted in C: most texts need no walk.
    if text.count("[") + text.count("{") > max_depth:
        check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise StrictJSONError when ``value``'s containers nest deeper than ``max_depth``.

    Iterative (no recursion to exhaust) and linear in the number of values.
    """
    level: list[Any] = [value]
    for depth in range(max_depth + 1):
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(v for v in item.values() if isinstance(v, (dict, list)))
            elif isinstance(item, list):
                inner.extend(v for v in item if isinstance(v, (dict, list)))
        if not inner:
            return
        if depth == max_depth - 1:
            raise StrictJSONError(f"the JSON nests deeper than {max_depth}")
        level = inner
