"""Helpers shared by the CLI commands: option parsing that fails with exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from attest.errors import UsageError
from attest.evidence.pcrs import PCRSelection
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


def read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
