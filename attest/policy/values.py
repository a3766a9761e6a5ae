"""The policy file's small value syntaxes: names and match patterns (durations and hex
are attest.durations and attest.hexdigits, shared with the command line).

Each parser takes the text as written and returns the value or raises
ValueError with a message the loader places at the value's line.
"""

from __future__ import annotations

import re

from attest.patterns import ShellPattern

# Policy ids travel in the signed "policy" claim of an artifact issued under a policy
# (and in denial messages); audit entries carry the verifier id, not the policy id.
_POLICY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_HOST_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")


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

