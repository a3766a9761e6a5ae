"""What one audit log entry says, and its exact bytes (the Merkle leaf data).

The leaf data is RFC 8785 canonical JSON, so anyone can rebuild the bytes from the
fields and the leaf hash from the bytes. The entry carries its own index: an entry
moved to another position (a deletion, insertion or swap) says where it belongs.

Never a secret: no artifact body, no command line (argv may carry credentials),
no denial messages (free text); only codes, names and digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import rfc8785

from attest import strictjson
from attest.errors import ProofError, UsageError
from attest.fieldtext import MAX_TEXT, fit

__all__ = ["MAX_TEXT", "Entry", "EntryKind", "Outcome", "claimed_index", "fit"]

FORMAT_VERSION = 1
MAX_REASONS = 64


class EntryKind(StrEnum):
    DECISION = "decision"
    ENROLLMENT = "enrollment"
    REVOCATION = "revocation"
    HOST_STATE = "host_state"  # a host's trust state changed (attest.server.reports)
    SUPERVISED_STOP = "supervised_stop"  # the host agent stopped a supervised run


class Outcome(StrEnum):
    """The ``decision`` field: what happened, one word per kind of entry."""

    ACCEPTED = "accepted"
    DENIED = "denied"
    ENROLLED = "enrolled"
    REVOKED = "revoked"
    READMITTED = "readmitted"  # an AK's TPM reset accepted by an administrator
    TRUSTED = "trusted"  # host_state: an accepted report
    UNTRUSTED = "untrusted"  # host_state: a report showed an unexpected measurement
    STALE = "stale"  # host_state: no accepted report within report_max_age
    STOPPED = "stopped"  # supervised_stop: SIGTERM, then SIGKILL after the grace
    # supervised_stop: a signal could not be sent (EPERM...); the run is still supervised
    # and the next stop tries again. ``signals`` holds those that were sent.
    STOP_FAILED = "stop_failed"


_OUTCOMES = {
    EntryKind.DECISION: {Outcome.ACCEPTED, Outcome.DENIED},
    # denied: an enrollment over HTTP refused (attest.verify.enrollment); it changed nothing
    EntryKind.ENROLLMENT: {Outcome.ENROLLED, Outcome.DENIED},
    EntryKind.REVOCATION: {Outcome.REVOKED, Outcome.READMITTED},
    EntryKind.HOST_STATE: {Outcome.TRUSTED, Outcome.UNTRUSTED, Outcome.STALE},
    EntryKind.SUPERVISED_STOP: {Outcome.STOPPED, Outcome.STOP_FAILED},
}
STOP_SIGNALS = ("SIGTERM", "SIGKILL")


@dataclass(frozen=True)
class Entry:
    """One event, before the log gives it an index.

    ``time`` is epoch seconds; ``artifact`` the SHA-256 (hex) of the artifact's
    compact serialization; ``reasons`` denial reason codes, or for a revocation the
    operator's reason.
    """

    kind: EntryKind
    decision: Outcome
    time: int
    verifier: str | None = None
    reasons: tuple[str, ...] = ()
    artifact: str | None = None
    jti: str | None = None
    host: str | None = None
    subject: str | None = None
    # supervised_stop only (absent from every other kind's bytes): the process stopped
    # and the signals it took, in order.
    pid: int | None = None
    signals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.decision not in _OUTCOMES[self.kind]:
            raise UsageError(f"a {self.kind.value} entry cannot say {self.decision.value}")
        if self.kind == EntryKind.SUPERVISED_STOP:
            sent = ((STOP_SIGNALS[:1], STOP_SIGNALS) if self.decision == Outcome.STOPPED
                    else ((), STOP_SIGNALS[:1]))
            if (not isinstance(self.pid, int) or isinstance(self.pid, bool) or self.pid <= 0
                    or self.signals not in sent):
                raise UsageError("a supervised_stop entry names a pid and SIGTERM [SIGKILL]")
        elif self.pid is not None or self.signals:
            raise UsageError(f"a {self.kind.value} entry has no pid or signals")
        if self.time < 0:
            raise UsageError(f"entry time {self.time} is negative")
        if len(self.reasons) > MAX_REASONS:
            raise UsageError(f"{len(self.reasons)} reasons; an entry holds {MAX_REASONS}")
        for name, value in (("verifier", self.verifier), ("artifact", self.artifact),
                            ("jti", self.jti), ("host", self.host), ("subject", self.subject),
                            *(("reason", r) for r in self.reasons)):
            if value is not None:
                _check_text(name, value)

    def to_json(self, index: int) -> dict[str, Any]:
        fields = {
            "v": FORMAT_VERSION,
            "index": index,
            "kind": self.kind.value,
            "time": self.time,
            "verifier": self.verifier,
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "artifact": self.artifact,
            "jti": self.jti,
            "host": self.host,
            "subject": self.subject,
        }
        if self.kind == EntryKind.SUPERVISED_STOP:
            fields |= {"pid": self.pid, "signals": list(self.signals)}
        return fields

    def encode(self, index: int) -> bytes:
        """The leaf data of this entry at ``index``: canonical JSON (RFC 8785), UTF-8."""
        return rfc8785.dumps(self.to_json(index))


def claimed_index(data: bytes) -> int:
    """The index an entry's bytes say it has; ProofError when they are not an entry."""
    try:
        value = strictjson.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ProofError("the entry is not JSON") from None
    index = value.get("index") if isinstance(value, dict) else None
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ProofError("the entry has no index")
    return index


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_TEXT:
        raise UsageError(f"entry field {name} is {len(value)} characters; at most {MAX_TEXT}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"entry field {name} is not valid Unicode text") from None
