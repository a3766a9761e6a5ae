"""How a command that fails tells its caller: one exit code, one kind, one shape.

The rule (docs/reasons.md, "Exit codes"): 1 when the evidence judged is refused or
invalid (with a reason code), 2 when the caller's usage is wrong (a bad flag, a file
that cannot be opened, an operator's file such as a policy that does not load), 3 when
the environment fails (no TPM, full disk, read-only file system), naming the path.
With ``--json`` the same failure is also a JSON object on stdout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from attest.cli.terminal import visible
from attest.errors import (
    EXIT_ENVIRONMENT,
    EXIT_REFUSED,
    EXIT_USAGE,
    AttestError,
    os_error_exit_code,
)

KINDS = {EXIT_REFUSED: "refused", EXIT_USAGE: "usage", EXIT_ENVIRONMENT: "environment"}

# ctx.meta key set by json_option (below) when the invoked command got --json.
JSON_FLAG = "attest.json"

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Failure:
    """A failed command as a script reads it: its exit code, kind, reason code (or None),
    message and hint."""

    exit_code: int
    message: str
    reason: str | None = None
    hint: str | None = None

    @property
    def kind(self) -> str:
        return KINDS.get(self.exit_code, "refused")

    @classmethod
    def of_error(cls, exc: AttestError) -> Failure:
        return cls(exc.exit_code, exc.message, exc.reason.value if exc.reason else None,
                   exc.hint)

    @classmethod
    def of_os_error(cls, exc: OSError) -> Failure:
        where = f": {exc.filename}" if exc.filename else ""
        return cls(os_error_exit_code(exc), f"{exc.strerror or exc}{where}")

    @classmethod
    def of_click(cls, exc: click.ClickException) -> Failure:
        return cls(exc.exit_code, exc.format_message())

    def to_json(self) -> dict[str, Any]:
        # Strings are JSON-escaped (ensure_ascii): a host-chosen name cannot reach a
        # terminal raw through them.
        return {"ok": False, "error": {"exit_code": self.exit_code, "kind": self.kind,
                                       "reason": self.reason, "message": self.message,
                                       "hint": self.hint}}


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[JSON_FLAG] = True  # AttestGroup then renders any error as JSON too
    return value


def json_option(help: str = "Machine-readable output.") -> Callable[[_F], _F]:
    """The one --json flag: the command prints JSON, and an error becomes
    {"ok": false, "error": {...}} on stdout (attest.cli.failure)."""
    return click.option("--json", "as_json", is_flag=True, help=help, callback=_remember_json)


def wants_json(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(JSON_FLAG))


def report(ctx: click.Context, failure: Failure, human: str | None) -> None:
    """The human text on stderr always; the JSON object on stdout too under --json."""
    if human is not None:
        click.echo(human, err=True)
    if wants_json(ctx):
        click.echo(json.dumps(failure.to_json(), indent=2, sort_keys=True))


def report_error(ctx: click.Context, exc: AttestError) -> None:
    report(ctx, Failure.of_error(exc), f"error: {exc.diagnostics(visible)}")


def report_os_error(ctx: click.Context, exc: OSError) -> int:
    failure = Failure.of_os_error(exc)
    where = f": {visible(exc.filename)}" if exc.filename else ""
    report(ctx, failure, f"error: {visible(exc.strerror or exc)}{where}")
    return failure.exit_code
