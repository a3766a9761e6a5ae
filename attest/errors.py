"""One root error, narrow subclasses.

The library raises; the CLI renders :meth:`AttestError.diagnostics` and maps
:attr:`AttestError.exit_code` to the process exit status. No traceback reaches a
user.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from attest.reasons import Reason

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3

# An OSError on a path the caller named: not there, not a file, or not theirs to open is
# usage; every other errno is the system failing under a correct request (ENOSPC, EDQUOT,
# EROFS, EIO, ENXIO, EMFILE, ...): environment.
USAGE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
                          errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST})


def os_error_exit_code(exc: OSError) -> int:
    return EXIT_USAGE if exc.errno in USAGE_ERRNOS else EXIT_ENVIRONMENT


class AttestError(Exception):
    """Root of every error ``attest`` raises on purpose."""

    exit_code: int = EXIT_REFUSED
    default_reason: Reason | None = None

    def __init__(
        self, message: str, *, hint: str | None = None, reason: Reason | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.reason = reason if reason is not None else self.default_reason

    def diagnostics(self, show: Callable[[str], str] = str) -> str:
        """A person-readable explanation, with the hint on its own line; ``show`` renders
        the message and the hint (the CLI escapes them: they quote files and evidence)."""
        text = show(self.message)
        if self.reason is not None:
            text = f"{self.reason.value}: {text}"
        if self.hint:
            text += f"\nhint: {show(self.hint)}"
        return text


class UsageError(AttestError):
    """Bad input from the caller: a malformed PCR list, nonce, or file."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(AttestError):
    """Something outside attest is missing: no TPM, simulator not running, tool absent."""

    exit_code = EXIT_ENVIRONMENT


class TPMUnavailable(EnvironmentProblem):
    """The TPM cannot be reached through the selected TCTI."""


class TSSUnavailable(EnvironmentProblem):
    """tpm2-pytss (or the libtss2 under it) is not installed: a verifier-only install.

    The verifier side never needs it; every host-side command (one that talks to a TPM)
    raises this from ``import attest.tpm``, so the user sees how to install the host side
    instead of an ImportError.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(f"the host side needs the TSS, which is not installed ({cause})",
                         hint="pip install 'attest[host]' and libtss2 (Debian: libtss2-dev)")


class SimulatorError(EnvironmentProblem):
    """The swtpm simulator could not be provisioned, started or stopped."""


class TPMError(AttestError):
    """The TPM refused a command; ``rc`` is the raw return code, the message says it in words."""

    def __init__(
        self,
        message: str,
        *,
        rc: int,
        hint: str | None = None,
        reason: Reason | None = None,
    ) -> None:
        super().__init__(message, hint=hint, reason=reason)
        self.rc = rc


class TPMEnvironmentError(TPMError):
    """The TPM cannot serve now (lockout, failure mode, lost connection), whatever was asked."""

    exit_code = EXIT_ENVIRONMENT


class NotProvisioned(EnvironmentProblem):
    """The home has no host identity, or the TPM lost the objects it names."""


class PCRPolicyMismatch(TPMError):
    """The PCRs a key is sealed to no longer hold the values its policy demands."""

    default_reason = Reason.KEY_POLICY_MISMATCH


class IdentityError(AttestError):
    """The TPM's identity (EK, SRK, AK) is missing or does not match its certificate."""


class KeyNotFound(UsageError):
    """No signing key of that name in the home."""


class EvidenceError(AttestError):
    """Evidence (a quote, a certification, an EK chain) does not prove what it claims.

    Always carries the :class:`Reason` a verifier reports as its denial.
    """

    def __init__(self, message: str, *, reason: Reason, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, reason=reason)
        self.reason: Reason = reason


class MalformedEvidence(EvidenceError):
    """Evidence bytes that do not parse as the TPM structure they claim to be."""


class MalformedInput(UsageError):
    """A file that is not in the format it should be in (PEM, tpm2-tools PCR file, ...)."""


class EventLogError(EvidenceError):
    """A measurement log (TCG PC Client boot log or CEL runtime log) that does not parse.

    Exit code 1, as every subclass: a log is evidence, and evidence that does not
    parse is refused with :attr:`reason` (``eventlog_malformed``), never bad usage;
    a verifier turns it into a denial. A log file that cannot be opened is usage (2).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: Reason = Reason.EVENTLOG_MALFORMED,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, hint=hint)


class EventLogMismatch(EventLogError):
    """A log that parses but does not replay to the PCR values the TPM reported."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, reason=Reason.EVENTLOG_MISMATCH, hint=hint)


class ReferenceValueMismatch(EventLogError):
    """A log that replays correctly but records a measurement the reference values forbid."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, reason=Reason.REFERENCE_VALUE_MISMATCH, hint=hint)


class ReplayMismatch(EventLogMismatch):
    """One PCR whose replayed value differs from the value the TPM reported.

    Carries what a person needs to find the culprit: the PCR, the bank, both
    values, and descriptions of the log's last events on that PCR.
    """

    def __init__(
        self,
        *,
        pcr: int,
        bank: str,
        expected: bytes,
        replayed: bytes,
        last_events: tuple[str, ...],
        hint: str | None = None,
    ) -> None:
        lines = [f"PCR {pcr} ({bank}) does not replay: the TPM reports {expected.hex()}, "
                 f"the log replays to {replayed.hex()}"]
        if last_events:
            lines.append(f"last events on PCR {pcr}:")
            lines.extend(f"  {text}" for text in last_events)
        else:
            lines.append(f"the log has no event on PCR {pcr}")
        super().__init__("\n".join(lines), hint=hint)
        self.pcr = pcr
        self.bank = bank
        self.expected = expected
        self.replayed = replayed
        self.last_events = last_events


class StoreUnavailable(EnvironmentProblem):
    """The verifier's database cannot be opened, read or written (missing, locked, full, newer)."""


class ProofError(AttestError):
    """A Merkle proof, tree head or audit log that does not verify: a refusal (exit 1)."""

    default_reason = Reason.PROOF_INVALID


class BatchProofError(ProofError):
    """A signature's batch membership that does not hold: malformed, or a proof that does
    not put the signed payload under the batch root the TPM signed (a signature denial)."""

    default_reason = Reason.BATCH_PROOF_INVALID


class AuditUnavailable(EnvironmentProblem):
    """The audit log cannot take an entry (store down, log key missing): nothing is accepted."""

    default_reason = Reason.AUDIT_UNAVAILABLE


class PolicyError(MalformedInput):
    """A verifier policy file that does not load.

    The message starts with where the fault is, the way compilers say it
    (``policy.yaml:12:14: freshness.max_age: expected a duration like 300s, 5m``),
    so an editor can jump to it; the parts are also kept as attributes.
    """

    def __init__(
        self,
        detail: str,
        *,
        file: str,
        line: int,
        column: int | None = None,
        path: str = "",
        hint: str | None = None,
    ) -> None:
        where = f"{file}:{line}" if column is None else f"{file}:{line}:{column}"
        super().__init__(f"{where}: {path}: {detail}" if path else f"{where}: {detail}",
                         hint=hint)
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.detail = detail
