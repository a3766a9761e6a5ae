"""The policy file as a tree of YAML nodes that remember where they were written.

PyYAML's constructor forgets positions and keeps the last of two equal keys
without a word. Reading the composed node tree instead gives every value its
line, column and key path, and lets the loader refuse what a policy file
should not contain: duplicate keys, aliases, and tags beyond plain YAML
(strings, numbers, booleans, null, lists, mappings).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from enum import StrEnum
from typing import Any, TypeVar

import yaml
from yaml.constructor import SafeConstructor

from attest.errors import PolicyError

_YAML = "tag:yaml.org,2002:"
STR = _YAML + "str"
INT = _YAML + "int"
FLOAT = _YAML + "float"
BOOL = _YAML + "bool"
NULL = _YAML + "null"
TIMESTAMP = _YAML + "timestamp"
SEQ = _YAML + "seq"
MAP = _YAML + "map"
_SCALARS = frozenset({STR, INT, FLOAT, BOOL, NULL, TIMESTAMP})
# Plain scalars YAML would read as numbers or dates; in free-form sections they
# are kept as written, so an unquoted all-digit hex digest stays a digest.
_TEXTUAL = frozenset({INT, FLOAT, TIMESTAMP})
_ALIAS = "!attest/alias"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# YAML 1.1 also reads 010 (octal 8), 0x10, 1_000 and 1:30 as integers; a PCR
# written 010 must not quietly become PCR 8.
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")

E = TypeVar("E", bound=StrEnum)


# Deeper than any policy (5 levels), far below the interpreter's recursion limit.
MAX_DEPTH = 64


class _Alias(yaml.ScalarNode):
    """Stands where ``*name`` was written, so the walk can refuse it at that spot."""

    def __init__(self, anchor: str, start_mark: Any, end_mark: Any) -> None:
        super().__init__(_ALIAS, f"*{anchor}", start_mark, end_mark)
        self.anchor = anchor


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer, but an alias stays an alias instead of sharing its node.

    Expanding aliases would point errors at the anchor rather than at the use, and
    a few nested aliases can expand to billions of nodes.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            # types-PyYAML leaves get_event unannotated.
            event = self.get_event()  # type: ignore[no-untyped-call]
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            return _Alias(event.anchor, event.start_mark, event.end_mark)
        # The composer recurses once per level: a deep text would end in RecursionError.
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"the YAML nests deeper than {MAX_DEPTH} levels",
                self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth


def compose(data: bytes, source: str) -> Located:
    """The root node of a one-document YAML file; PolicyError if it does not parse."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError("the file is not UTF-8 text", file=source,
                          line=data[: exc.start].count(b"\n") + 1) from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = ", ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise PolicyError(f"not valid YAML: {detail}", file=source,
                          line=mark.line + 1 if mark else 1,
                          column=mark.column + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        raise PolicyError(f"not valid YAML: {exc.reason}", file=source,
                          line=text[: exc.position].count("\n") + 1) from None
    if root is None:
        raise PolicyError("the file holds no policy", file=source, line=1)
    return Located(root, "", source)


def child_path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if not _IDENTIFIER.match(text):
        return f"{path}[{text}]"
    return f"{path}.{text}" if path else text


def _found(node: yaml.Node) -> str:
    """What a node is, for 'expected X, found Y'."""
    if node.tag == _ALIAS:
        return f"the alias {node.value}"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    names = {STR: "the string", INT: "the number", FLOAT: "the number", BOOL: "the boolean",
             TIMESTAMP: "the date"}
    if node.tag == NULL:
        return "nothing (null)"
    return f"{names.get(node.tag, 'the value')} {node.value!r}"


class Located:
    """One YAML node with its key path; every accessor checks the type it reads."""

    __slots__ = ("_mark", "node", "path", "source")

    def __init__(self, node: yaml.Node, path: str, source: str,
                 key: yaml.Node | None = None) -> None:
        self.node = node
        self.path = path
        self.source = source
        # A block mapping or list starts on the line after its key; a person looks
        # for it at the key, so that is where errors about it point.
        block = isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
        self._mark = key.start_mark if key is not None and block else node.start_mark

    @property
    def line(self) -> int:
        return int(self._mark.line) + 1

    @property
    def column(self) -> int:
        return int(self._mark.column) + 1

    def error(self, detail: str, *, hint: str | None = None) -> PolicyError:
        return PolicyError(detail, file=self.source, line=self.line, column=self.column,
                           path=self.path, hint=hint)

    def _expected(self, what: str, hint: str | None = None) -> PolicyError:
        return self.error(f"expected {what}, found {_found(self.node)}", hint=hint)

    def _check_tag(self) -> None:
        tag = self.node.tag
        if tag == _ALIAS:
            raise self.error(f"aliases ({self.node.value}) are not allowed in a policy",
                             hint="write the value out where it is used")
        if tag not in _SCALARS and tag not in (SEQ, MAP):
            raise self.error(f"the YAML tag {tag} is not allowed in a policy",
                             hint="use plain values; quote text that YAML reads specially")

    # --- collections -------------------------------------------------------

    def mapping(self, allowed: Collection[str]) -> Fields:
        """A mapping whose keys must all be in ``allowed``."""
        pairs = self.pairs(what="a mapping")
        fields: dict[str, tuple[Located, Located]] = {}
        for key, value in pairs:
            name = key.node.value
            if key.node.tag != STR:
                raise key._expected("a key name")
            if name not in allowed:
                close = difflib.get_close_matches(name, list(allowed), n=1)
                raise key.error(
                    f"unknown key; allowed here: {', '.join(sorted(allowed))}",
                    hint=f"did you mean {close[0]}?" if close else None)
            fields[name] = (key, value)
        return Fields(self, fields)

    def pairs(self, *, what: str = "a mapping") -> list[tuple[Located, Located]]:
        """(key, value) of a mapping with scalar keys, in file order; no key twice."""
        self._check_tag()
        if not isinstance(self.node, yaml.MappingNode):
            raise self._expected(what)
        first_line: dict[Any, int] = {}
        out: list[tuple[Located, Located]] = []
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise Located(key_node, self.path, self.source).error("keys must be plain values")
            key = Located(key_node, child_path(self.path, key_node.value), self.source)
            key._check_tag()
            identity = (key_node.tag, scalar_value(key_node))
            if identity in first_line:
                raise key.error(f"duplicate key; first written on line {first_line[identity]}")
            first_line[identity] = key.line
            out.append((key, Located(value_node, key.path, self.source, key_node)))
        return out

    def items(self, *, what: str = "a list") -> list[Located]:
        self._check_tag()
        if not isinstance(self.node, yaml.SequenceNode):
            raise self._expected(what)
        return [Located(node, child_path(self.path, index), self.source)
                for index, node in enumerate(self.node.value)]

    # --- scalars -----------------------------------------------------------

    def _scalar(self, tag: str, what: str, hint: str | None = None) -> Any:
        self._check_tag()
        if self.node.tag != tag:
            raise self._expected(what, hint)
        return scalar_value(self.node)

    def string(self, what: str = "a string") -> str:
        return str(self._scalar(STR, what, hint="put it in quotes"))

    def text(self, what: str) -> str:
        """A scalar exactly as written, whatever YAML would read it as (hex, durations)."""
        self._check_tag()
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag == NULL:
            raise self._expected(what)
        return str(self.node.value)

    def integer(self, low: int, high: int | None = None) -> int:
        bounds = f"{low}-{high}" if high is not None else f"{low} or more"
        what = f"a whole number {bounds}"
        self._scalar(INT, what)
        if not _DECIMAL.match(self.node.value):
            raise self._expected(what, hint="write it in decimal without leading zeros")
        value = int(self.node.value)
        if value < low or (high is not None and value > high):
            raise self._expected(what)
        return value

    def boolean(self) -> bool:
        return self._scalar(BOOL, "true or false") is True

    def choice(self, kind: type[E]) -> E:
        options = " | ".join(member.value for member in kind)
        value = self._scalar(STR, f"one of {options}")
        try:
            return kind(value)
        except ValueError:
            raise self._expected(f"one of {options}") from None

    def plain(self, *, numbers_as_text: bool = False) -> Any:
        """The node as plain Python data (dicts, lists, scalars), for free-form sections."""
        self._check_tag()
        if isinstance(self.node, yaml.MappingNode):
            return {scalar_value(key.node): value.plain(numbers_as_text=numbers_as_text)
                    for key, value in self.pairs()}
        if isinstance(self.node, yaml.SequenceNode):
            return [item.plain(numbers_as_text=numbers_as_text) for item in self.items()]
        if numbers_as_text and self.node.tag in _TEXTUAL and \
                getattr(self.node, "style", None) is None:
            return self.node.value
        return scalar_value(self.node)

    def find(self, path: str) -> Located:
        """The deepest node along ``path`` (relative to this node) that exists."""
        at = self
        for part in re.findall(r"\.?([^.\[\]]+)|\[([^\]]*)\]", path):
            name = part[0] or part[1]
            nxt: Located | None = None
            if isinstance(at.node, yaml.MappingNode):
                for key_node, value_node in at.node.value:
                    if isinstance(key_node, yaml.ScalarNode) and str(key_node.value) == name:
                        nxt = Located(value_node, child_path(at.path, key_node.value),
                                      self.source, key_node)
            elif isinstance(at.node, yaml.SequenceNode) and name.isdigit() and \
                    int(name) < len(at.node.value):
                nxt = Located(at.node.value[int(name)], child_path(at.path, int(name)),
                              self.source)
            if nxt is None:
                break
            at = nxt
        return at


def scalar_value(node: yaml.Node) -> Any:
    """What SafeLoader would make of one scalar node."""
    if node.tag == _ALIAS or node.tag not in _SCALARS:
        return node.value
    return SafeConstructor().construct_object(node, deep=True)


class Fields:
    """The keys of one mapping, read by name; the key nodes are kept for error lines."""

    def __init__(self, owner: Located, fields: dict[str, tuple[Located, Located]]) -> None:
        self.owner = owner
        self._fields = fields

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def get(self, name: str) -> Located | None:
        entry = self._fields.get(name)
        return entry[1] if entry else None

    def key(self, name: str) -> Located:
        """Where the key itself is written (for errors about the whole entry)."""
        return self._fields[name][0]

    def require(self, name: str, *, hint: str | None = None) -> Located:
        value = self.get(name)
        if value is None:
            owner = self.owner
            raise PolicyError("required but missing", file=owner.source, line=owner.line,
                              column=owner.column, path=child_path(owner.path, name), hint=hint)
        return value
