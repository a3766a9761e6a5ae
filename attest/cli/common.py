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
from attest.cli.failure import Failure
from attest.cli.terminal import visible
from attest.errors import (
    EXIT_REFUSED,
    EvidenceError,
    UsageError,
)
from attest.evidence.pcrs import PCRSelection, parse_index
from attest.inputfile import read_bounded
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


def parse_duration(text: str, what: str = "duration", maximum: int = MAX_TTL_S,
                   minimum: int = 1) -> int:
    """Whole seconds from any form attest.durations reads ("90", "90s", "1h30m", "2d");
    UsageError (exit 2), in the one wording every option shares, unless ``minimum`` to
    ``maximum``."""
    try:
        return durations.parse_duration(text, minimum=minimum, maximum=maximum)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}", hint=durations.range_hint(
            minimum * 1000, maximum * 1000)) from None


def parse_seconds(text: str, what: str, minimum: float, maximum: float) -> float:
    """Seconds to the millisecond ("500ms", "2s", "1m"), for a period shorter than a
    second may be; the same syntax, wording and exit code as :func:`parse_duration`."""
    try:
        return durations.parse_seconds(text, minimum=minimum, maximum=maximum)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}", hint=durations.range_hint(
            round(minimum * 1000), round(maximum * 1000), whole_seconds=False)) from None


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


def pcr_index(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A click callback for one PCR index, read as every PCR selection reads its indices
    (attest.evidence.pcrs.parse_index): 15 or 0x0f, 0-23; not +15, 1_5 or 015."""
    return None if value is None else parse_index(value)


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


def read_input(path: Path, what: str, limit: int = MAX_INPUT_BYTES,
               evidence: Reason | None = None) -> bytes:
    """attest.inputfile.read_bounded with the CLI's default bound."""
    return read_bounded(path, what, limit, evidence)
