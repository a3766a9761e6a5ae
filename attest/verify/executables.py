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

from collections.abc import Generator, Iterable, Set

from attest.artifact.model import Scope
from attest.decision import Denial
from attest.eventlog.cel import CelRecord, is_command
from attest.policy.model import VerifierPolicy
from attest.reasons import Reason

EXEC_ACTION = "exec"


def executable_denials(scope: Scope, policy: VerifierPolicy,
                       measured: Set[str] | None) -> Generator[Denial, None, None]:
    """Yield the denials for the executable and environment ``scope`` names (none: allowed).

    ``measured`` holds the SHA-256 digests (hex, as recorded) of the commands the
    artifact's runtime log measured (:func:`measured_commands`), once its logs hold
    (None when they do not: the artifact is denied for that already, and the log
    check is skipped).
    """
    extra = sorted(set(scope.env) - set(policy.keep_env))
    if extra:
        yield Denial(Reason.POLICY_MISMATCH,
                     f"the artifact keeps {_names(extra)} in the command's environment; "
                     "the policy's keep_env does not allow it")
    # A name listed with values: the value's digest, which the scope carries, must be one.
    other = sorted(name for name, digest in scope.env.items()
                   if name in policy.keep_env_values
                   and digest.lower() not in policy.keep_env_values[name])
    if other:
        yield Denial(Reason.POLICY_MISMATCH,
                     f"the artifact keeps {_names(other)} with a value the policy's "
                     "keep_env does not list")
    digest = scope.executable_digest
    if digest is None:
        if scope.action == EXEC_ACTION:
            yield Denial(Reason.REFERENCE_VALUE_MISMATCH,
                         "an exec artifact must name its executable's digest")
        return
    allowed = policy.executables
    if allowed is None:
        yield Denial(Reason.REFERENCE_VALUE_MISMATCH,
                     "the policy has no executables section, so it allows no "
                     "executable (list them, or write `executables: any`)")
        return
    if allowed.any:
        return
    program = _names(scope.argv[:1]) if scope.argv else "the executable"
    if bytes.fromhex(digest) not in allowed.allowed:
        yield Denial(Reason.REFERENCE_VALUE_MISMATCH,
                     f"{program} (sha256 {digest}) is not among the policy's "
                     "executables")
    if measured is not None and digest not in measured:
        yield Denial(Reason.EVENTLOG_MISMATCH,
                     f"the runtime log never measured {program} (sha256 {digest}): "
                     "the artifact names an executable the host did not measure")


def measured_commands(records: Iterable[CelRecord]) -> frozenset[str]:
    """The SHA-256 digests (hex, as recorded) of the commands ``records`` measured.
    Computed once per log text with the rest of its appraisal: a log of thousands of
    records is not walked again for every artifact that carries it."""
    # Content-bound records only reach here (the verifier checked them before replay).
    found: set[str] = set()
    for record in records:
        if is_command(record):
            measured = record.content.get("digest")
            if isinstance(measured, dict) and isinstance(digest := measured.get("sha256"), str):
                found.add(digest)
    return frozenset(found)


def _names(values: Iterable[str]) -> str:
    # Host-chosen text: quoted and escaped, and cut short.
    return ", ".join(repr(value[:80]) for value in values)
