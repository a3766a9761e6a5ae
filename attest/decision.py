"""A verifier's decision: accepted, or denied with every reason found.

At the bottom of the stack, beside attest.reasons: the verifier makes decisions, the
audit log records them, the CLI prints them; none of those imports another for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attest.reasons import Reason


@dataclass(frozen=True)
class Denial:
    reason: Reason
    message: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason.value, "message": self.message}


@dataclass(frozen=True)
class Decision:
    """``accepted`` is True only when no check failed; ``denials`` lists every failure.

    ``facts`` holds what the verifier established (host, AK, key, quoted PCRs,
    runtime measurements), for the caller and the audit log. ``artifact_sha256`` is
    the accepted artifact's identity (hex SHA-256 of its JWS signing input, see
    :attr:`attest.artifact.jws.ParsedArtifact.sha256`), what the audit log names it by.
    """

    accepted: bool
    denials: tuple[Denial, ...] = ()
    jti: str | None = None
    subject: str | None = None
    host: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    audit_index: int | None = None
    artifact_sha256: str | None = None

    def __post_init__(self) -> None:
        # The one invariant that makes the type fail closed: no acceptance with a reason.
        if self.accepted and self.denials:
            raise ValueError("a decision cannot be accepted and denied")
        if not self.accepted and not self.denials:
            raise ValueError("a denial needs at least one reason")

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(d.reason.value for d in self.denials)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "denials": [d.to_json() for d in self.denials],
            "jti": self.jti,
            "subject": self.subject,
            "host": self.host,
            "facts": dict(self.facts),
            "audit_index": self.audit_index,
        }
