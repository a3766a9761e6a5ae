"""Lineage: a child artifact stands only on an accepted, live, unrevoked parent, and may
only narrow what the parent authorized. Parents and children are issued on swtpm with
`--parent` semantics (attest.host.issue.Request.parent). A child of an unknown or
revoked parent, or where no children are allowed: from the recorded corpus, in
test_corpus_reasons.py."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from attest.artifact import jws
from attest.artifact.model import Lineage
from attest.policy import Rule
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted, denied

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]


@pytest.fixture
def verifier(rig: Rig) -> Verifier:
    return rig.verifier(rig.policy(rules=ANY_RULE))


def test_a_child_within_its_parent_is_accepted(rig: Rig, verifier: Verifier) -> None:
    parent = rig.issue("ls", "-l", "/srv/*", resources=("db1", "db2"), ttl=300)
    accepted(verifier.verify(parent))
    child = rig.issue("ls", "-l", "/srv/data", resources=("db1",), ttl=60, parent=parent)
    assert jws.parse(child).claims.lineage == Lineage(jws.parse(parent).claims.jti,
                                                      jws.parse(parent).sha256, 1)
    accepted(verifier.verify(child))
    grandchild = rig.issue("ls", "-l", "/srv/data", ttl=30, parent=child)
    accepted(verifier.verify(grandchild))


def test_revoking_an_artifact_revokes_its_descendants(rig: Rig, verifier: Verifier) -> None:
    parent = rig.issue(ttl=300)
    accepted(verifier.verify(parent))
    child = rig.issue(ttl=200, parent=parent)
    accepted(verifier.verify(child))
    grandchild = rig.issue(ttl=100, parent=child)
    revoked = verifier.store.revoke_artifact(jws.parse(parent).claims.jti, "withdrawn",
                                             int(time.time()))
    assert revoked == [jws.parse(parent).claims.jti, jws.parse(child).claims.jti]
    denied(verifier.verify(grandchild), "lineage_broken")


def test_lineage_broken_too_deep(rig: Rig) -> None:
    verifier = rig.verifier(rig.policy(rules=ANY_RULE, max_depth=1))
    parent = rig.issue(ttl=300)
    accepted(verifier.verify(parent))
    child = rig.issue(ttl=200, parent=parent)
    accepted(verifier.verify(child))
    decision = verifier.verify(rig.issue(ttl=100, parent=child))
    denied(decision, "lineage_broken")
    assert "exceeds the policy's 1" in decision.denials[0].message


def test_lineage_broken_parent_expired(rig: Rig, verifier: Verifier) -> None:
    parent = rig.issue(ttl=60)
    accepted(verifier.verify(parent))
    iat, parent_exp = jws.parse(parent).claims.iat, jws.parse(parent).claims.exp
    child = rig.issue(ttl=60, now=iat, parent=parent)  # expires with its parent
    # The child is still within the 30 s clock skew; its parent is over (no skew there).
    decision = verifier.verify(child, now=parent_exp + 5)
    denied(decision, "lineage_broken")
    assert "expired" in decision.denials[0].message


@pytest.mark.parametrize("lie", [
    pytest.param(lambda lin: dataclasses.replace(lin, parent_sha256="ab" * 32), id="digest"),
    pytest.param(lambda lin: dataclasses.replace(lin, depth=2), id="depth"),
])
def test_lineage_broken_child_misnames_its_parent(rig: Rig, verifier: Verifier,
                                                  lie: object) -> None:
    parent = rig.issue(ttl=300)
    accepted(verifier.verify(parent))
    child = rig.reissue(rig.issue(parent=parent), requote=True, claims=lambda c: (
        dataclasses.replace(c, lineage=lie(c.lineage))))  # type: ignore[operator]
    denied(verifier.verify(child), "lineage_broken")


def _tool(tmp: Path, body: str) -> str:
    path = tmp / "tool"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("field", ["action", "argv", "argv-longer", "resources", "exp",
                                   "executable_digest"])
def test_scope_escalation(rig: Rig, verifier: Verifier, field: str) -> None:
    """A child may only narrow its parent: each scope field, widened, is scope_escalation."""
    tool = _tool(rig.tmp, "echo v1")
    parent_args: dict[str, object] = {"resources": ("db1",), "ttl": 120}
    argv: tuple[str, ...] = ("ls", "-l", "/srv/*")
    child_argv: tuple[str, ...] = ("ls", "-l", "/srv/data")
    child_args: dict[str, object] = {"resources": ("db1",), "ttl": 60}
    if field == "action":
        parent_args["action"], child_args["action"] = "backup", "delete"
    elif field == "argv":
        child_argv = ("ls", "-l", "/etc")
    elif field == "argv-longer":
        child_argv = ("ls", "-l", "/srv/data", "/etc")
    elif field == "resources":
        child_args["resources"] = ("db1", "db2")
    elif field == "exp":
        child_args["ttl"] = 600
    else:
        argv = child_argv = (tool,)
        # Both versions measured and allowed: only the lineage can object to v2.
        rig.host.ok("measure", "command", "--", tool)
        _tool(rig.tmp, "echo v2, not what the parent authorized")
        rig.host.ok("measure", "command", "--", tool)
        verifier = rig.verifier(rig.policy(rules=ANY_RULE))
        _tool(rig.tmp, "echo v1")
    parent = rig.issue(*argv, **parent_args)  # type: ignore[arg-type]
    accepted(verifier.verify(parent))
    if field == "executable_digest":
        _tool(rig.tmp, "echo v2, not what the parent authorized")
    child = rig.issue(*child_argv, parent=parent, **child_args)  # type: ignore[arg-type]
    decision = verifier.verify(child)
    denied(decision, "scope_escalation")
    said = {"action": "action", "argv": "argv", "argv-longer": "argv",
            "resources": "resources", "exp": "exp", "executable_digest": "digest"}[field]
    assert said in decision.denials[0].message
