"""`attest result`: attestation results (EAR) checked offline, and the key that signs them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from attest import timetext
from attest.cli.common import echo_json, read_input, refuse_evidence
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.ear import keys as result_keys
from attest.ear.token import MAX_TOKEN_BYTES
from attest.errors import EvidenceError, UsageError

if TYPE_CHECKING:
    from attest.audit.note import VerifierKey


@click.group()
def result() -> None:
    """Attestation results: the EAR JWTs a verifier service signs for its decisions."""


@result.command("verify")
@click.argument("source", metavar="TOKEN|FILE|-")
@click.option("--verifier-key", "verifier_keys", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A PEM public key of the verifier (`attest result key`); repeatable "
              "[default: $ATTEST_HOME/verifier-keys/*.pem].")
@click.option("--log-key", "log_key", metavar="PUBKEY",
              help="The audit log's verifier key (`attest audit key`), or a file holding "
              "it [default: the log key of $ATTEST_HOME, where it is].")
@click.option("--artifact", "artifact_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The artifact the result must be about (its bytes, identity and jti).")
@click.option("--nonce", help="The nonce the result must carry (with --artifact).")
@click.option("--at", "at", metavar="TIME",
              help="Check the result's lifetime as of TIME (Unix seconds, or UTC like "
              "2026-12-03T10:00:00Z) instead of now: an audit of a past decision, whose "
              "result expired minutes after it was issued. Not for deciding now.")
@json_option(help='Print {"ok", "valid", "status", "jti", "artifact", "host", "subject", '
             '"reasons", "audit_index", "checkpoint": {"origin", "size"}}.')
@click.pass_context
def verify(ctx: click.Context, source: str, verifier_keys: tuple[Path, ...],
           log_key: str | None, artifact_path: Path | None, nonce: str | None,
           at: str | None, as_json: bool) -> None:
    """Check an attestation result offline: its signature by a trusted verifier key, its
    profile and times, its status, and its audit receipt (the decision's entry, proven
    in a tree head signed by the log key). Exit 0 when it affirms and all holds, 1 with
    the reason otherwise, 2 for usage. A result lives 300 s: to audit an older one, say
    when it was acted on with --at.

    \b
      attest result verify result.jwt --verifier-key verifier.pem --log-key audit.pub
      attest result verify result.jwt --at 2026-12-03T10:00:00Z
    """
    from attest.ear import result as ear

    text = _token(source)
    trusted = result_keys.trusted(ctx.obj.home, verifier_keys)
    log = _log_key(ctx, log_key)
    if nonce is not None and artifact_path is None:
        raise UsageError("--nonce is checked with --artifact: give both")
    artifact = None if artifact_path is None else read_input(artifact_path, "artifact").strip()
    now = int(time.time()) if at is None else _time(at)
    try:
        found = ear.read(text, trusted, now=now)
        checkpoint = ear.check_receipt(found, log)
        if artifact is not None:
            ear.check_bound(found, artifact=artifact, nonce=nonce)
        ear.require_affirming(found)
    except EvidenceError as exc:
        refuse_evidence(exc, as_json)
        return
    if as_json:
        echo_json({"ok": True, "valid": True, **found.to_json(),
                   "checkpoint": {"origin": checkpoint.origin, "size": checkpoint.size}})
        return
    click.echo(f"ok: {found.status.value} for {visible(found.host)} "
               f"({visible(found.artifact_jti)}), logged at entry "
               f"{found.receipt['index'] if found.receipt else '?'} of "
               f"{visible(checkpoint.origin)} (size {checkpoint.size})"
               + ("" if at is None else f", valid at {timetext.iso(now)}"))


def _time(text: str) -> int:
    """--at: Unix seconds, or an ISO 8601 time with its zone (a bare one is ambiguous)."""
    from datetime import datetime

    if text.isascii() and text.isdigit() and len(text) <= 12:  # not '²', not 10^5000
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise UsageError(f"--at: not a time: {visible(text)}",
                         hint="Unix seconds, or UTC like 2026-12-03T10:00:00Z")
    return int(when.timestamp())




@result.command("key")
@click.option("--jwk", "as_jwk", is_flag=True, help="Print the JWKS (as GET /v1/keys does).")
@json_option(help='Print {"ok": true, "pem": "<PEM>", "jwk": {...}}.')
@click.pass_context
def key(ctx: click.Context, as_jwk: bool, as_json: bool) -> None:
    """Print the public key that checks this verifier's results (made on first use in
    the verifier's home, as `attest serve` makes it): what hosts trust with
    --verifier-key or in $ATTEST_HOME/verifier-keys/."""
    from attest.ear import token

    made = not result_keys.key_path(ctx.obj.home).exists()
    public = result_keys.load_or_create(ctx.obj.home).public_key()
    if made:
        # Run on a host by mistake (its own ATTEST_HOME), this made a key no verifier
        # signs with: trusted, it would deny every run with invalid_signature.
        click.echo(f"attest: made a new result key in {visible(str(ctx.obj.home))}; hosts "
                   "must trust the key of the home `attest serve` runs with (--home, "
                   "$ATTEST_HOME)", err=True)
    if as_json:
        echo_json({"ok": True, "pem": result_keys.public_pem(public), "jwk": token.jwk(public)})
        return
    if as_jwk:
        echo_json({"keys": [token.jwk(public)]})
        return
    click.echo(result_keys.public_pem(public), nl=False)


def _token(source: str) -> bytes:
    if source == "-":
        data = sys.stdin.buffer.read(MAX_TOKEN_BYTES + 1)
        if len(data) > MAX_TOKEN_BYTES:
            raise UsageError(f"the result on stdin is larger than {MAX_TOKEN_BYTES} bytes")
        return data
    try:
        is_file = Path(source).is_file()
    except OSError:  # a token is far longer than a file name may be
        is_file = False
    if not is_file and source.count(".") == 2:
        return source.encode("ascii", "replace")
    return read_input(Path(source), "result", MAX_TOKEN_BYTES)


def _log_key(ctx: click.Context, text: str | None) -> VerifierKey:
    from attest.audit import keys as log_keys
    from attest.cli.audit import _key

    if text is not None:
        return _key(text)
    found = log_keys.load_public(ctx.obj.home)
    if found is None:
        raise UsageError("no audit log key to check the result's receipt with",
                         hint="pass --log-key (`attest audit key` on the verifier prints it)")
    return found
