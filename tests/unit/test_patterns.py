"""attest.patterns: fnmatch's meaning, in time linear in the text, within stated bounds."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest

from attest.artifact.model import MAX_ARGV_CHARS
from attest.patterns import (
    MAX_PATTERN_CHARS,
    MAX_PATTERN_SETS,
    MAX_PATTERN_STARS,
    PatternTooComplex,
    ShellPattern,
    shell_match,
)
from attest.policy.values import check_pattern

CASES = [
    ("/srv/*", "/srv/data"), ("/srv/*", "/srv"), ("*", ""), ("", ""), ("?", ""),
    ("a*b*c", "abc"), ("a*b*c", "aXbYbZc"), ("a*b*c", "acb"), ("*.log", "x.log.gz"),
    ("[abc]x", "bx"), ("[!abc]x", "bx"), ("[a-c]", "b"), ("[c-a]", "b"), ("[]]", "]"),
    ("[!]]", "a"), ("[", "["), ("[[]", "["), ("a[", "a["), ("[a-]", "-"), ("[\\]", "\\"),
    ("**a**", "xa"), ("*?", ""), ("?*?", "ab"), ("a\nb*", "a\nbc"), ("*x*", "\n\nx\n"),
]


@pytest.mark.parametrize(("pattern", "text"), CASES)
def test_matches_as_fnmatchcase_does(pattern: str, text: str) -> None:
    assert shell_match(text, pattern) == fnmatchcase(text, pattern)


def test_matches_as_fnmatchcase_on_random_patterns() -> None:
    rnd = random.Random(2026)  # noqa: S311 - test data, not a secret
    for _ in range(5_000):
        pattern = "".join(rnd.choice("ab*?[]!-^\\") for _ in range(rnd.randint(0, 9)))
        text = "".join(rnd.choice("ab-]![^\\*?") for _ in range(rnd.randint(0, 9)))
        assert shell_match(text, pattern) == fnmatchcase(text, pattern), (pattern, text)


def test_a_megabyte_literal_pattern_is_a_comparison() -> None:
    # fnmatch compiles (and caches) a regular expression of it: seconds for this size.
    big = "x" * 4_000_000
    assert shell_match(big, big) and not shell_match(big + "y", big)


def test_a_text_is_read_once_whatever_the_stars() -> None:
    text = "a" * MAX_ARGV_CHARS  # the most an artifact's argv may hold
    assert not shell_match(text, "*a" * (MAX_PATTERN_STARS - 1) + "*b")
    assert shell_match(text, "*" + "a?" * 1000 + "*")
    assert not shell_match(text, "*[ab]" * MAX_PATTERN_SETS + "?" * 3000 + "c*")


@pytest.mark.parametrize("pattern", [
    "?" * (MAX_PATTERN_CHARS + 1),
    "*a" * (MAX_PATTERN_STARS + 1),
    "[ab]" * (MAX_PATTERN_SETS + 1),
])
def test_patterns_beyond_the_bounds_are_refused(pattern: str) -> None:
    with pytest.raises(PatternTooComplex):
        ShellPattern(pattern)
    with pytest.raises(ValueError, match="at most"):
        check_pattern(pattern)  # a policy file's rule: refused when loaded
