"""Lineage: a child artifact may only narrow what its parent authorized."""

from __future__ import annotations

from collections.abc import Generator

from attest import strictjson, timetext
from attest.artifact.model import Lineage, Scope
from attest.decision import Denial
from attest.patterns import PatternTooComplex, shell_match
from attest.policy.model import LineageLimits
from attest.reasons import Reason
from attest.store import ArtifactRecord, Revocation


def check_lineage(parent: ArtifactRecord | None, revoked: Revocation | None, lineage: Lineage,
                  scope: Scope, exp: int, limits: LineageLimits, now: int, *,
                  match_argv: bool = True) -> Generator[Denial, None, None]:
    """Yield the denials of a child naming ``lineage``; none when the parent vouches for it.

    ``match_argv`` False leaves out the argv's match against the parent's patterns (the
    verifier's choice for claims no signature vouches for, which are denied anyway).

    ``parent`` is the artifact stored under ``lineage.parent`` (None: never accepted),
    ``revoked`` the nearest revocation of its line (``Store.ancestry_revoked``); both as
    :meth:`attest.store.Store.snapshot` reads them.
    """
    if parent is None:
        yield Denial(Reason.LINEAGE_BROKEN,
                     f"the parent {lineage.parent} was never accepted by this verifier")
        return
    if parent.sha256 != lineage.parent_sha256:
        yield Denial(Reason.LINEAGE_BROKEN, "the parent's SHA-256 is not the one the child names")
    if parent.exp < now:
        yield Denial(Reason.LINEAGE_BROKEN,
                     f"the parent expired at {timetext.moment(parent.exp, now)}")
    if revoked is not None:
        yield Denial(Reason.LINEAGE_BROKEN,
                     f"the parent's line is revoked ({revoked.kind.value} {revoked.subject}: "
                     f"{revoked.reason})")
    if lineage.depth != parent.depth + 1:
        yield Denial(Reason.LINEAGE_BROKEN,
                     f"depth {lineage.depth} is not the parent's {parent.depth} + 1")
    if lineage.depth > limits.max_depth:
        yield Denial(Reason.LINEAGE_BROKEN,
                     f"lineage depth {lineage.depth} exceeds the policy's {limits.max_depth}")
    yield from _scope_within(parent, scope, exp, match_argv)


def _scope_within(parent: ArtifactRecord, scope: Scope, exp: int,
                  match_argv: bool) -> list[Denial]:
    """Attenuation only: same action, argv matching the parent's patterns, fewer resources."""
    allowed = Scope.from_json(strictjson.loads(parent.scope))
    found: list[str] = []
    if scope.action != allowed.action:
        found.append(f"action {scope.action!r} is not the parent's {allowed.action!r}")
    if match_argv:
        found.extend(_argv_within(scope.argv, allowed.argv))
    extra = sorted(set(scope.resources) - set(allowed.resources))
    if extra:
        found.append(f"resources {extra} are not among the parent's")
    if allowed.executable_digest is not None and scope.executable_digest != \
            allowed.executable_digest:
        found.append("the executable's digest is not the parent's")
    if any(allowed.env.get(name) != value for name, value in scope.env.items()):
        found.append("it keeps environment variables (or values) the parent did not")
    if exp > parent.exp:
        found.append(f"exp {timetext.iso(exp)} is past the parent's "
                     f"{timetext.iso(parent.exp)}")
    return [Denial(Reason.SCOPE_ESCALATION, message) for message in found]


def _argv_within(argv: tuple[str, ...], patterns: tuple[str, ...]) -> list[str]:
    """Each argument matches the parent's pattern at its position (linear-time matching;
    a parent pattern beyond attest.patterns' bounds vouches for nothing)."""
    if len(argv) != len(patterns):
        return [f"argv has {len(argv)} arguments, the parent's {len(patterns)}"]
    for position, (arg, pattern) in enumerate(zip(argv, patterns, strict=True)):
        try:
            if not shell_match(arg, pattern):
                return [f"argv[{position}] {_excerpt(arg)} does not match the parent's "
                        f"{_excerpt(pattern)}"]
        except PatternTooComplex as exc:
            return [f"the parent's argv[{position}] is no usable pattern: {exc}"]
    return []


def _excerpt(text: str, limit: int = 64) -> str:
    # Messages quote arguments, which may be megabytes long.
    return repr(text if len(text) <= limit else text[:limit] + "...")
