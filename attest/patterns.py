"""Shell-style patterns (fnmatch's syntax and meaning), matched in time linear in the text.

``fnmatch`` compiles each pattern to a regular expression: a pattern that is
megabytes long (a parent artifact's argv element, chosen by the host) costs
seconds to compile and is then cached, and a text is searched once per ``*``.
Here a pattern is split at its ``*`` into segments; the first must match at
the start, the last at the end, and each middle one is placed at its leftmost
occurrence after the previous (greedy placement is optimal for ``*``, so
nothing is ever retried). A segment of literal characters is found with
``str.find``; one with ``?`` or ``[...]`` with a bit-parallel scan (Shift-And)
that reads each character of the text once. The scans of successive segments
cover disjoint parts of the text: one pass in all.

Patterns with ``?`` or sets are bounded (:data:`MAX_PATTERN_CHARS`,
:data:`MAX_PATTERN_SETS`); patterns of literals and ``*`` may be as long as
their input is allowed to be. Set syntax and meaning are fnmatch's own: each
``[...]`` is translated by ``fnmatch.translate`` into a one-character class.
"""

from __future__ import annotations

import re
from fnmatch import translate

from attest.memo import remember

MAX_PATTERN_CHARS = 4096  # a pattern with '?' or '[...]' (bit-parallel state of this many bits)
MAX_PATTERN_SETS = 16  # '[...]' per pattern: each is tested per distinct character of a text
MAX_PATTERN_STARS = 256  # runs of '*' per pattern: one search of the text each


class PatternTooComplex(ValueError):
    """A pattern beyond the bounds that keep matching it cheap."""


_STAR = object()
_ANY = object()


class _CharSet:
    """One ``[...]``: fnmatch's translation of it, matching one character."""

    __slots__ = ("_regex",)

    def __init__(self, bracket: str) -> None:
        self._regex = re.compile(translate(bracket))

    def has(self, char: str) -> bool:
        return self._regex.match(char) is not None


_Token = str | _CharSet | object  # a run of literal characters, a set, _ANY


class _Segment:
    """The tokens between two stars."""

    __slots__ = ("any_mask", "length", "literal", "literal_masks", "sets", "tokens")

    def __init__(self, runs: list[_Token]) -> None:
        if all(isinstance(t, str) for t in runs):
            self.literal: str | None = "".join(t for t in runs if isinstance(t, str))
            self.tokens: tuple[_Token, ...] = ()
            self.length = len(self.literal)
            return
        # With '?' or a set: one token per character (the pattern's length is bounded).
        self.literal = None
        self.tokens = tuple(c for t in runs for c in (t if isinstance(t, str) else (t,)))
        self.length = len(self.tokens)
        self.literal_masks: dict[str, int] = {}
        self.any_mask = 0
        self.sets: list[tuple[int, _CharSet]] = []
        for index, token in enumerate(self.tokens):
            bit = 1 << index
            if isinstance(token, str):
                self.literal_masks[token] = self.literal_masks.get(token, 0) | bit
            elif isinstance(token, _CharSet):
                self.sets.append((bit, token))
            else:
                self.any_mask |= bit

    def at(self, text: str, start: int) -> bool:
        """Whether the segment matches ``text`` at ``start`` (room checked by the caller)."""
        if self.literal is not None:
            return text.startswith(self.literal, start)
        for offset, token in enumerate(self.tokens):
            char = text[start + offset]
            if isinstance(token, str):
                if char != token:
                    return False
            elif isinstance(token, _CharSet) and not token.has(char):
                return False
        return True

    def find(self, text: str, start: int, end: int) -> int:
        """The leftmost index i >= start with the segment matching text[i:i+length] by end."""
        if self.literal is not None:
            return text.find(self.literal, start, end)
        # Shift-And: bit j of state is set when the first j+1 tokens match just before here.
        accept = 1 << (self.length - 1)
        masks: dict[str, int] = {}
        state = 0
        for index in range(start, end):
            char = text[index]
            mask = masks.get(char)
            if mask is None:
                mask = self.literal_masks.get(char, 0) | self.any_mask
                for bit, charset in self.sets:
                    if charset.has(char):
                        mask |= bit
                masks[char] = mask
            state = ((state << 1) | 1) & mask
            if state & accept:
                return index - self.length + 1
        return -1


class ShellPattern:
    """A compiled shell-style pattern; :meth:`matches` is case-sensitive, like fnmatchcase."""

    __slots__ = ("_segments", "_starred", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens = _tokens(pattern)
        wild = [t for t in tokens if t is _ANY or isinstance(t, _CharSet)]
        if wild and len(pattern) > MAX_PATTERN_CHARS:
            raise PatternTooComplex(f"a pattern with '?' or '[...]' has at most "
                                    f"{MAX_PATTERN_CHARS} characters, not {len(pattern)}")
        if sum(isinstance(t, _CharSet) for t in wild) > MAX_PATTERN_SETS:
            raise PatternTooComplex(f"a pattern has at most {MAX_PATTERN_SETS} '[...]' sets")
        stars = tokens.count(_STAR)
        if stars > MAX_PATTERN_STARS:
            raise PatternTooComplex(f"a pattern has at most {MAX_PATTERN_STARS} runs of '*', "
                                    f"not {stars}")
        self._starred = stars > 0
        segments: list[list[_Token]] = [[]]
        for token in tokens:
            if token is _STAR:
                segments.append([])
            else:
                segments[-1].append(token)
        self._segments = [_Segment(s) for s in segments]

    def matches(self, text: str) -> bool:
        if not self._starred:
            only = self._segments[0]
            return len(text) == only.length and only.at(text, 0)
        first, *middle, last = self._segments
        end = len(text) - last.length
        if first.length > end or not first.at(text, 0) or not last.at(text, end):
            return False
        position = first.length
        for segment in middle:
            found = segment.find(text, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True


_SPECIAL = re.compile(r"\*+|[?\[]")
_WILDCARD = re.compile(r"\*+|\?")


def _tokens(pattern: str) -> list[_Token]:
    """Literal runs, _ANY, _STAR (runs of '*' as one) and sets, as fnmatch reads them.

    One pass: a set consumes the text up to its ']', and a '[' after the last ']' is
    known unclosed without searching again.
    """
    tokens: list[_Token] = []
    pending: list[str] = []  # literal text since the last wildcard, joined once

    def wildcard(token: _Token) -> None:
        if pending:
            tokens.append("".join(pending))
            pending.clear()
        if token is not _STAR or not tokens or tokens[-1] is not _STAR:
            tokens.append(token)

    last_close = pattern.rfind("]")
    index = 0
    while True:
        # Past the last ']' every '[' is a literal: look for '*' and '?' only.
        found = (_SPECIAL if index <= last_close else _WILDCARD).search(pattern, index)
        if found is None:
            if index < len(pattern):
                pending.append(pattern[index:])
            break
        start = found.start()
        if start > index:
            pending.append(pattern[index:start])
        char, index = pattern[start], found.end()
        if char == "*":
            wildcard(_STAR)
        elif char == "?":
            wildcard(_ANY)
        else:
            close = index
            if close < len(pattern) and pattern[close] == "!":
                close += 1
            if close < len(pattern) and pattern[close] == "]":
                close += 1
            close = pattern.find("]", close) if close <= last_close else -1
            if close < 0:
                pending.append("[")  # unclosed: a literal '[', as fnmatch reads it
            else:
                wildcard(_CharSet(pattern[start:close + 1]))
                index = close + 1
    if pending:
        tokens.append("".join(pending))
    return tokens


# Compiled patterns by text: a policy's few patterns, and parents' argv patterns, which
# repeat for every child. Bounded in count and kept only when short (senders choose them).
_COMPILED: dict[str, ShellPattern] = {}
COMPILED_CACHE_SIZE = 1024
COMPILED_MAX_CHARS = 1024


def compile_pattern(pattern: str) -> ShellPattern:
    """The compiled ``pattern``; raise PatternTooComplex beyond the bounds."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = ShellPattern(pattern)
        if len(pattern) <= COMPILED_MAX_CHARS:
            remember(_COMPILED, pattern, compiled, COMPILED_CACHE_SIZE)
    return compiled


def shell_match(text: str, pattern: str) -> bool:
    """fnmatchcase(text, pattern), in time linear in ``text``; PatternTooComplex beyond bounds."""
    return compile_pattern(pattern).matches(text)
