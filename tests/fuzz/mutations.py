"""Structure-aware mutation strategies shared by the fuzz tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

# Values that hit boundaries when written over a length, a count or an algorithm id.
INTERESTING = [0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
_PACK = {"u8": "B", ">u16": ">H", "<u16": "<H", ">u32": ">I", "<u32": "<I"}


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_steps: int = 4) -> bytes:
    """One of ``seeds`` with 1..max_steps mutations: bit flips, an interesting integer over
    what may be a length field, truncation, deletion, insertion, or a splice of another
    seed's bytes."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, max_steps))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "int", "truncate", "delete", "insert",
                                     "splice"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "int":
            fmt = _PACK[draw(st.sampled_from(sorted(_PACK)))]
            value = draw(st.sampled_from(INTERESTING)) & ((1 << (8 * struct.calcsize(fmt))) - 1)
            packed = struct.pack(fmt, value)
            data[at:at + len(packed)] = packed
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            donor = draw(st.sampled_from(list(seeds)))
            if donor:
                start = draw(st.integers(0, len(donor) - 1))
                data[at:] = donor[start:start + draw(st.integers(1, 256))] + data[at:]
    return bytes(data)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON tree (the root is ``()``), keys and indexes from the top."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# Values a hostile sender puts where something else belongs.
HOSTILE = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.sampled_from([-1, 0, 2**31, 2**53, 2**53 + 1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -0.0, 5e-324]),
    st.text(max_size=40), st.sampled_from(["", "\x00", "\ud800", "\u202e", "é" * 300,
                                           "00" * 33, "zz", "A" * 5000, "-1", "1e99"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.none(),
                                                         max_size=3),
    st.sampled_from([_nested(40), _nested(5), {"": {}}, [[]]]),
)


def _with(value: Any, path: tuple[Any, ...], replace: Any) -> Any:
    if not path:
        return replace
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy: dict[str, Any] | list[Any] = dict(value)
    else:
        copy = list(value)
    copy[head] = _with(value[head], rest, replace)
    return copy


_DELETE = object()


def _apply(value: Any, path: tuple[Any, ...], change: Any) -> Any:
    """``value`` with the location ``path`` replaced by ``change`` (or removed)."""
    if change is _DELETE:
        parent_path, last = path[:-1], path[-1]
        parent = value
        for step in parent_path:
            parent = parent[step]
        trimmed: Any = ({k: v for k, v in parent.items() if k != last} if isinstance(parent, dict)
                        else [v for i, v in enumerate(parent) if i != last])
        return _with(value, parent_path, trimmed)
    return _with(value, path, change)


@st.composite
def json_mutated(draw: st.DrawFn, seeds: Sequence[Any], max_steps: int = 2) -> Any:
    """A decoded JSON document from ``seeds`` with 1..max_steps structural edits: a value
    replaced by a hostile one, a member or item removed, an extra member added, a value
    wrapped in a list, or a string made longer or its characters changed."""
    value = draw(st.sampled_from(list(seeds)))
    for _ in range(draw(st.integers(1, max_steps))):
        path = draw(st.sampled_from(paths(value)))
        current = value
        for step in path:
            current = current[step]
        kind = draw(st.sampled_from(["replace", "delete", "extra", "wrap", "string"]))
        if kind == "delete" and path:
            value = _apply(value, path, _DELETE)
        elif kind == "extra" and isinstance(current, dict):
            extra = {**current, draw(st.text(max_size=8)): draw(HOSTILE)}
            value = _apply(value, path, extra)
        elif kind == "wrap":
            value = _apply(value, path, [current])
        elif kind == "string" and isinstance(current, str):
            value = _apply(value, path, draw(st.sampled_from([
                current * 3, current[:-1], current + draw(st.text(max_size=4)),
                current.upper(), current[::-1]])))
        else:
            value = _apply(value, path, draw(HOSTILE))
    return value
