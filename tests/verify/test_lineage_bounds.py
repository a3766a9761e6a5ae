"""Lineage matching costs what the child's argv costs: a parent cannot make each child's
verification expensive with a huge or intricate argv pattern. Issued and re-signed on
swtpm, as a host that lies would."""

from __future__ import annotations

import dataclasses

import pytest

from attest.artifact.model import MAX_ARG_CHARS, MAX_ARGV_CHARS, MAX_ARGV_ELEMENTS, Claims
from attest.patterns import MAX_PATTERN_CHARS
from attest.policy import Rule
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted, denied

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]


@pytest.fixture
def verifier(rig: Rig) -> Verifier:
    return rig.verifier(rig.policy(rules=ANY_RULE))


def with_argv(*argv: str):  # type: ignore[no-untyped-def]
    def edit(claims: Claims) -> Claims:
        return dataclasses.replace(claims, scope=dataclasses.replace(claims.scope, argv=argv))
    return edit


@pytest.mark.parametrize("argv", [
    ("ls", "x" * (5 << 20)),  # the reported attack: megabytes, within MAX_ARTIFACT_BYTES
    ("ls", "x" * (MAX_ARG_CHARS + 1)),
    ("ls", *["x" * (MAX_ARG_CHARS // 2)] * 5),  # each within, all beyond the total
    ("ls",) * (MAX_ARGV_ELEMENTS + 1),
])
def test_an_argv_beyond_the_bounds_is_malformed(rig: Rig, verifier: Verifier,
                                                argv: tuple[str, ...]) -> None:
    raw = rig.reissue(rig.issue(), requote=True, claims=with_argv(*argv))
    decision = verifier.verify(raw)
    denied(decision, "malformed_artifact")
    assert "at most" in decision.denials[0].message


def test_a_parent_with_the_largest_argument_still_vouches_cheaply(rig: Rig,
                                                                 verifier: Verifier) -> None:
    big = "d" * (MAX_ARG_CHARS - 8)
    parent = rig.reissue(rig.issue(ttl=300), requote=True, claims=with_argv("ls", big + "*"))
    accepted(verifier.verify(parent))
    child = rig.issue("ls", big + "-tail", ttl=60, parent=parent)
    accepted(verifier.verify(child))
    other = rig.issue("ls", "e" + big, ttl=60, parent=parent)
    decision = verifier.verify(other)
    denied(decision, "scope_escalation")
    # The message quotes an excerpt, not the megabytes the parent chose.
    assert len(decision.denials[0].message) < 400
    assert MAX_ARGV_CHARS >= 2 * MAX_ARG_CHARS


def test_a_parent_pattern_beyond_the_bounds_vouches_for_nothing(rig: Rig,
                                                              verifier: Verifier) -> None:
    pattern = "?" * (MAX_PATTERN_CHARS + 1)
    parent = rig.reissue(rig.issue(ttl=300), requote=True, claims=with_argv("ls", pattern))
    accepted(verifier.verify(parent))  # the parent itself names what it runs
    child = rig.issue("ls", "y" * len(pattern), ttl=60, parent=parent)
    decision = verifier.verify(child)
    denied(decision, "scope_escalation")
    assert "no usable pattern" in decision.denials[0].message


def test_patterns_are_matched_only_for_a_signed_artifact(rig: Rig,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An enrolled AK's public area is in every artifact of its host: anyone can send
    claims under it with a forged signature. Rule and lineage patterns (a Python scan
    per character for '?' and sets: ~0.2 s per pattern for 256 KiB of argv) then read
    the sender's argv before anything vouches for it; they run only once the JWS
    signature verifies with the certified key."""
    import dataclasses

    import attest.verify.lineage as lineage_module
    from attest.artifact import jws
    from attest.artifact.model import b64url
    from attest.patterns import shell_match
    from attest.policy import model

    verifier = rig.verifier(rig.policy(rules=[
        Rule(("*",), ("*",), ("ls *[0-9]*", "ls ?*"), ("*",))]))
    parent = rig.issue("ls", "*")
    accepted(verifier.verify(parent))
    calls: list[str] = []

    def counted(text: str, pattern: str) -> bool:
        calls.append(pattern)
        return shell_match(text, pattern)

    monkeypatch.setattr(model, "shell_match", counted)
    monkeypatch.setattr(lineage_module, "shell_match", counted)
    child = jws.parse(rig.issue("ls", "-l", parent=parent))
    argv = ("ls", "".join(chr(0x10000 + i) for i in range(100_000)))
    forged_claims = dataclasses.replace(child.claims, scope=dataclasses.replace(
        child.claims.scope, argv=argv))
    forged = (jws.signing_input(child.header, forged_claims) + b"."
              + b64url(child.signature).encode())
    decision = verifier.verify(forged)
    assert not decision.accepted
    assert "invalid_signature" in decision.reasons
    assert calls == [], f"{len(calls)} patterns matched against an unsigned argv"
