"""The binding's canonical JSON against the rfc8785 library, and the parsed evidence.

``canonical_bound`` writes JCS with json.dumps for the shape claims have; the library
is the reference. Hypothesis draws the free text of claims from all of Unicode (astral
characters, characters above U+D7FF that order differently in UTF-16, lone
surrogates, control characters) and every drawn claim must give the library's bytes
or, where the library refuses, be refused.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.artifact.model import (
    Claims,
    Evidence,
    Lineage,
    Scope,
    b64url,
    canonical_bound,
    unb64url,
)
from attest.errors import EvidenceError

# All of Unicode, surrogates included (json.loads makes them from "\ud800" escapes).
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                             exclude_categories=()), min_size=1, max_size=12)
# Keys that sort differently by code point and by UTF-16 unit, and plain ones.
KEYS = st.one_of(TEXT, st.sampled_from(["\uffff", "\U00010000", "\ue000", "a", "\ud7ff"]))

EVIDENCE = Evidence(b"q", b"qs", b"k", b"c", b"cs", b"a", b"[]")


@st.composite
def claims(draw: st.DrawFn) -> Claims:
    return Claims(
        iss=draw(TEXT), sub=draw(TEXT), jti=draw(TEXT),
        iat=draw(st.integers(0, 2**53 - 1)), nbf=draw(st.integers(0, 2**53 - 1)),
        exp=draw(st.integers(0, 2**53 - 1)),
        scope=Scope(draw(TEXT), tuple(draw(st.lists(TEXT, max_size=4))),
                    draw(st.none() | st.just("ab" * 32)),
                    tuple(draw(st.lists(TEXT, max_size=3))),
                    draw(st.dictionaries(KEYS, st.just("ef" * 32), max_size=3))),
        env_bank=draw(TEXT),
        env_pcrs=draw(st.dictionaries(st.integers(0, 23), st.just("00" * 32), max_size=5)),
        evidence=EVIDENCE, aud=draw(st.none() | TEXT), eat_nonce=draw(st.none() | TEXT),
        policy_id=draw(st.none() | TEXT), policy_digest=draw(st.none() | TEXT),
        lineage=draw(st.none() | st.builds(Lineage, TEXT, st.just("cd" * 32),
                                           st.integers(1, 2**53 - 1))),
        gov=draw(st.dictionaries(KEYS, TEXT, max_size=4)))


@settings(max_examples=600, deadline=None)
@given(claims())
def test_canonical_bound_is_rfc8785(drawn: Claims) -> None:
    try:
        expected = rfc8785.dumps(drawn.bound_json())
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):  # the latter: a key's surrogate
        with pytest.raises(EvidenceError, match="no canonical JSON") as refused:
            canonical_bound(drawn)
        assert refused.value.reason == "malformed_artifact"
        return
    assert canonical_bound(drawn) == expected


def test_gov_keys_ordered_by_utf16_units() -> None:
    """U+E000 sorts after U+10000 by code point, before it by UTF-16 unit (0xD800)."""
    drawn = dataclasses.replace(_plain(), gov={"\ue000": "x", "\U00010000": "y"})
    text = canonical_bound(drawn).decode()
    assert text.index("\U00010000") < text.index("\ue000")
    assert canonical_bound(drawn) == rfc8785.dumps(drawn.bound_json())


def test_lone_surrogate_refused() -> None:
    with pytest.raises(EvidenceError, match="lone surrogate"):
        canonical_bound(dataclasses.replace(_plain(), sub="a\ud800"))


def _plain() -> Claims:
    return Claims(iss="00", sub="s", jti="j", iat=1, nbf=1, exp=2, scope=Scope("exec", ("x",)),
                  env_bank="sha256", env_pcrs={}, evidence=EVIDENCE)


# -- Evidence parsed from JSON: logs decoded when read ----------------------------------


def test_evidence_from_json_keeps_the_log_text_and_decodes_on_reading() -> None:
    made = Evidence(b"q", b"qs", b"k", b"c", b"cs", b"a", b"runtime log", b"boot log")
    parsed = Evidence.from_json(json.loads(json.dumps(made.to_json())))
    assert "runtime_log" not in parsed.__dict__ and "boot_log" not in parsed.__dict__
    assert parsed.encoded("runtime_log") == b64url(b"runtime log")
    assert parsed.runtime_log == b"runtime log" and parsed.boot_log == b"boot log"
    assert parsed == made and parsed.to_json() == made.to_json()
    replaced = dataclasses.replace(parsed, quote=b"other")
    assert replaced.runtime_log == b"runtime log" and replaced.quote == b"other"


def test_evidence_without_boot_log() -> None:
    made = Evidence(b"q", b"qs", b"k", b"c", b"cs", b"a", b"")
    parsed = Evidence.from_json(made.to_json())
    assert parsed.boot_log is None and parsed.encoded("boot_log") is None
    assert parsed.runtime_log == b"" and parsed == made


@pytest.mark.parametrize("field", ["runtime_log", "boot_log", "ak", "quote"])
@pytest.mark.parametrize("bad", ["a", "ab==", "a+b/", "ab cd", "é", 7, ["YQ"], {"a": 1}])
def test_evidence_fields_must_be_base64url(field: str, bad: object) -> None:
    data: dict[str, object] = dict(EVIDENCE.to_json())
    data[field] = bad
    with pytest.raises(EvidenceError, match=f"evidence.{field} is not base64url"):
        Evidence.from_json(data)


def test_repeated_fields_decoded_once_are_the_same_bytes() -> None:
    first = Evidence.from_json(EVIDENCE.to_json())
    second = Evidence.from_json(EVIDENCE.to_json())
    assert first.ak_public == second.ak_public == b"a"
    assert first.certify_signature == b"cs"


@pytest.mark.parametrize("length", range(0, 70))
def test_unb64url_round_trip(length: int) -> None:
    data = bytes(range(length))
    assert unb64url(b64url(data), "x") == data


def test_large_repeated_fields_are_not_kept() -> None:
    """The decoded-field cache holds TPM-sized texts only: a sender picks the sizes."""
    from attest.artifact import model

    big = b64url(b"\x01" * 4096)
    parsed = Evidence.from_json({**EVIDENCE.to_json(), "ak": big})
    assert parsed.ak_public == b"\x01" * 4096
    assert big not in model._DECODED


def test_scope_env_names_ordered_by_utf16_units() -> None:
    """scope.env names are free keys too (the parser takes any name of 1-128 characters
    without '='): JCS orders them by UTF-16 unit, as gov's."""
    drawn = dataclasses.replace(_plain(), scope=Scope(
        "exec", ("x",), env={"\ue000": "ab" * 32, "\U00010000": "cd" * 32}))
    assert canonical_bound(drawn) == rfc8785.dumps(drawn.bound_json())
