"""Helpers shared by the CLI commands: option parsing that fails with exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from attest.errors import MalformedInput, UsageError
from attest.evidence.pcrs import PCRSelection
from attest.inputfile import read_at_most
from attest.tpm.device import TPM, open_tpm

MAX_NONCE_BYTES = 64


def parse_hex(value: str, what: str, max_bytes: int | None = None) -> bytes:
    text = value.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{what} is not hex: {value!r}", hint="write e.g. 00112233") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise UsageError(f"{what} is {len(data)} bytes; at most {max_bytes} fit")
    return data


def parse_selection(value: str) -> PCRSelection:
    return PCRSelection.parse(value)


@contextmanager
def tpm_from(ctx: click.Context) -> Iterator[TPM]:
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
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_input(path: Path, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``path``; MalformedInput (exit 2) when it holds more than ``limit``."""
    data = read_prefix(path, what, limit)
    if len(data) > limit:
        raise MalformedInput(f"{what} {path} holds more than {limit} bytes: not one")
    return data
