"""Helpers shared by the CLI commands: option parsing that fails with exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from attest import durations, hexdigits
from attest.artifact.model import MAX_TTL_S
from attest.cli.failure import Failure, os_error_exit_code
from attest.cli.terminal import visible
from attest.errors import (
    EXIT_REFUSED,
    EXIT_USAGE,
    EnvironmentProblem,
    EvidenceError,
    MalformedEvidence,
    MalformedInput,
    UsageError,
)
from attest.evidence.pcrs import PCRSelection
from attest.inputfile import read_at_most
from attest.reasons import Reason

if TYPE_CHECKING:
    from attest.tpm.device import TPM

MAX_NONCE_BYTES = 64


def parse_hex(value: str, what: str, max_bytes: int | None = None) -> bytes:
    try:
        return hexdigits.parse_hex(value, what=what, max_size=max_bytes)
    except ValueError as exc:
        raise UsageError(str(exc), hint="write hex digits, e.g. 00112233") from None


def utf8_text(value: str, what: str) -> str:
    """``value`` when it is UTF-8 text: an id or a reason the store and the audit log keep
    as text, which bytes from argv that are not UTF-8 cannot be (UsageError, exit 2)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not UTF-8 text: {value!r}") from None
    return value


def parse_duration(text: str, what: str = "duration", maximum: int = MAX_TTL_S) -> int:
    """Seconds from "90", "90s", "5m", "1h30m", "2d"; UsageError unless 1 s to ``maximum``."""
    try:
        return durations.parse_duration(text, minimum=1, maximum=maximum)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}", hint="write e.g. 60s, 5m, 1h; from 1s to "
                         f"{durations.format_duration(maximum)}") from None


def refuse_evidence(exc: EvidenceError, as_json: bool) -> None:
    """`invalid: <reason>: <message>` and exit 1: how `quote verify` and `ek verify`
    report evidence that does not verify (a result, not an error)."""
    reason = exc.reason.value if exc.reason else "invalid"
    if as_json:
        # "valid"/"reason"/"message" as before; "ok"/"error" as every command's failure.
        echo_json({"valid": False, "reason": reason, "message": exc.message,
                   **Failure.of_error(exc).to_json()})
    # The person's text on stderr, --json or not, as every failing command's.
    click.echo(f"invalid: {reason}: {visible(exc.message)}", err=True)
    if exc.hint:
        click.echo(f"hint: {visible(exc.hint)}", err=True)
    raise SystemExit(EXIT_REFUSED)


def parse_selection(value: str) -> PCRSelection:
    return PCRSelection.parse(value)


@contextmanager
def tpm_from(ctx: click.Context) -> Iterator[TPM]:
    # Imported here: the verifier-side commands share this module and run without the TSS.
    from attest.tpm.device import open_tpm

    with open_tpm(ctx.obj.tcti) as tpm:
        yield tpm


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


# The most a file named on the command line may hold: every input attest reads (an
# artifact is at most 8 MiB, an event log a few) with room to spare. A FIFO, a device
# (/dev/zero) or a file that grows never ends: no more than this is ever read.
MAX_INPUT_BYTES = 64 << 20


def read_prefix(path: Path, what: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path``: the whole file, or a prefix that shows the
    file is larger than ``limit`` (for a reader that reports the size itself)."""
    try:
        return read_at_most(path, limit)
    except OSError as exc:
        # Not there or not a file: the caller's usage; an I/O error: the environment's.
        error = UsageError if os_error_exit_code(exc) == EXIT_USAGE else EnvironmentProblem
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None


def read_input(path: Path, what: str, limit: int = MAX_INPUT_BYTES,
               evidence: Reason | None = None) -> bytes:
    """The bytes of ``path``. More than ``limit`` is MalformedInput (exit 2), or, for
    ``evidence`` (a file whose content is judged), MalformedEvidence with that reason
    (exit 1): no such evidence is that large."""
    data = read_prefix(path, what, limit)
    if len(data) > limit:
        message = f"{what} {path} holds more than {limit} bytes: not one"
        if evidence is not None:
            raise MalformedEvidence(message, reason=evidence)
        raise MalformedInput(message)
    return data
