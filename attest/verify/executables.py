"""What an exec artifact may run: an executable the policy allows and the host measured.

``scope.executable_digest`` is the SHA-256 of the file the host will exec. It is
checked against the policy's ``executables`` (reference values for executables,
by digest), and against the runtime log the quote vouches for: the log must hold
a command measurement of exactly that digest, so an artifact cannot name a digest
that was never measured (``attest run`` measures the sealed copy it execs just
before issuing). The record is the host's own: a host user who extends the runtime
PCR by hand can record any digest, so against a lying host the policy's list is
the check, and this one keeps an honest host's artifacts to what it measured.
Kept code-injecting variables (``scope.env``) must be ones the policy's
``keep_env`` names, with one of its values where it lists them.
"""

from __future__ import annotations

from collections.abc import Iterable

from attest.artifact.model import Scope
from attest.eventlog.cel import ATTEST_CONTENT_TYPE, CelRecord
from attest.eventlog.tcg import TcgEvent
from attest.policy.model import VerifierPolicy
from attest.reasons import Reason
from attest.verify.decision import Denial

EXEC_ACTION = "exec"


def executable_denials(scope: Scope, policy: VerifierPolicy,
                       events: Iterable[TcgEvent | CelRecord] | None) -> list[Denial]:
    """Denials for the executable and environment ``scope`` names; empty when allowed.

    ``events`` are the artifact's logs once they parsed (None when they did not:
    the artifact is denied for that already, and the log check is skipped).
    """
    found: list[Denial] = []
    extra = sorted(set(scope.env) - set(policy.keep_env))
    if extra:
        found.append(Denial(Reason.POLICY_MISMATCH,
                            f"the artifact keeps {_names(extra)} in the command's environment; "
                            "the policy's keep_env does not allow it"))
    # A name listed with values: the value's digest, which the scope carries, must be one.
    other = sorted(name for name, digest in scope.env.items()
                   if name in policy.keep_env_values
                   and digest.lower() not in policy.keep_env_values[name])
    if other:
        found.append(Denial(Reason.POLICY_MISMATCH,
                            f"the artifact keeps {_names(other)} with a value the policy's "
                            "keep_env does not list"))
    digest = scope.executable_digest
    if digest is None:
        if scope.action == EXEC_ACTION:
            found.append(Denial(Reason.REFERENCE_VALUE_MISMATCH,
                                "an exec artifact must name its executable's digest"))
        return found
    allowed = policy.executables
    if allowed is None:
        found.append(Denial(Reason.REFERENCE_VALUE_MISMATCH,
                            "the policy has no executables section, so it allows no "
                            "executable (list them, or write `executables: any`)"))
        return found
    if allowed.any:
        return found
    program = _names(scope.argv[:1]) if scope.argv else "the executable"
    if bytes.fromhex(digest) not in allowed.allowed:
        found.append(Denial(Reason.REFERENCE_VALUE_MISMATCH,
                            f"{program} (sha256 {digest}) is not among the policy's "
                            "executables"))
    if events is not None and not _measured(events, digest):
        found.append(Denial(Reason.EVENTLOG_MISMATCH,
                            f"the runtime log never measured {program} (sha256 {digest}): "
                            "the artifact names an executable the host did not measure"))
    return found


def _measured(events: Iterable[TcgEvent | CelRecord], digest: str) -> bool:
    # Content-bound records only reach here (the verifier checked them before replay).
    for event in events:
        if (isinstance(event, CelRecord) and event.extends
                and event.content_type == ATTEST_CONTENT_TYPE
                and event.content.get("type") == "command"):
            measured = event.content.get("digest")
            if isinstance(measured, dict) and measured.get("sha256") == digest:
                return True
    return False


def _names(values: Iterable[str]) -> str:
    # Host-chosen text: quoted and escaped, and cut short.
    return ", ".join(repr(value[:80]) for value in values)
