"""`attest audit`: check the audit log, print heads and proofs, check proofs offline.

Exit codes: 0 ok, 1 invalid (a log, head or proof that does not verify, or a proof file
that does not parse: proof_invalid), 2 usage (a file that cannot be opened, a verifier
key that does not parse), 3 store unavailable. Every command takes --json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from attest import strictjson
from attest.cli.common import echo_json, read_input
from attest.cli.failure import Failure, json_option
from attest.cli.terminal import visible
from attest.cli.verifier import open_store
from attest.errors import MalformedInput, UsageError
from attest.reasons import Reason

if TYPE_CHECKING:
    from attest.audit.log import SignedHead
    from attest.audit.note import VerifierKey
    from attest.audit.verifications import Verification
    from attest.store import Store

_STORE = click.option("--store", "store_url", metavar="URL",
                      help="The verifier's store [default: $ATTEST_STORE, else "
                      "sqlite:///$ATTEST_HOME/verifier.db].")
_JSON = json_option(help="Machine-readable output.")
# Sizes and indexes are SQLite integers: a larger one names no entry and is usage (2).
_MAX_INDEX = 2**63 - 1
_KEY_HELP = ("The log's verifier key (name+id+key, as `attest audit key` prints it), or a "
             "file holding it.")


@click.group()
def audit() -> None:
    """The tamper-evident audit log of decisions, enrollments and revocations.

    `attest docs audit` explains it."""


@audit.command("verify")
@_STORE
@click.option("--trusted-head", type=click.Path(dir_okay=False, path_type=Path),
              help="A tree head saved earlier (`attest audit head`): the log must extend it.")
@click.option("--key", "key_text", metavar="PUBKEY",
              help=_KEY_HELP + " [default: the log key in $ATTEST_HOME]")
@_JSON
@click.pass_context
def verify(ctx: click.Context, store_url: str | None, trusted_head: Path | None,
           key_text: str | None, as_json: bool) -> None:
    """Recompute every leaf, subtree and root; check every head's signature and consistency.

    Where the log key is (and no --key is given), the log must also extend the last head
    the key signed, which is kept beside it. Every accepted artifact, enrollment and
    revocation in the store must have its entry.

    Exit 0 with a summary when the log holds; exit 1 naming the first entry changed,
    deleted, inserted or reordered, or the head forged. Either outcome is recorded in
    the store, where the console's Audit page shows it as the last verification.
    """
    from attest.audit import keys, verifications
    from attest.audit.check import LogInvalid, verify_log
    from attest.audit.log import AuditLog

    key = _key(key_text) if key_text else keys.load_public(ctx.obj.home)
    trusted = None if trusted_head is None else read_input(trusted_head, "trusted head").decode(
        errors="replace")
    if trusted is None and not key_text:
        # Where the log key is, the last head it signed: the database alone can't undo it.
        trusted = keys.last_head_note(ctx.obj.home)
    # Where the log key is, entries after its last head must carry their entry MACs.
    signer = None if key_text else keys.load_own(ctx.obj.home)
    with open_store(ctx, store_url) as store:
        AuditLog.open(store, None)  # creates the tables in a new store: an empty log verifies
        try:
            summary = verify_log(store, key, trusted, signer)
        except LogInvalid as exc:
            _record(store, verifications.Verification(
                checked_at=int(time.time()), valid=False, problem=exc.problems[0].message,
                findings=len(exc.problems)))
            if as_json:
                echo_json({"valid": False, "problems": [
                    {"position": p.position, "message": p.message} for p in exc.problems],
                    **Failure.of_error(exc).to_json()})
                raise SystemExit(1) from None
            raise
        _record(store, verifications.Verification(
            checked_at=int(time.time()), valid=True, entries=summary.entries,
            heads=summary.heads, root=summary.root))
    root = _b64(summary.root)
    if as_json:
        echo_json({"ok": True, "valid": True, "entries": summary.entries,
                   "heads": summary.heads, "root": root})
    else:
        click.echo(f"ok: {summary.entries} entries, {summary.heads} heads, root {root}")


@audit.command("seal-revocations")
@_STORE
@_JSON
@click.pass_context
def seal_revocations(ctx: click.Context, store_url: str | None, as_json: bool) -> None:
    """Seal the store's revocations as they stand, once the log verifies (`attest docs audit`).

    For a store whose revocations predate their seals (the audited verifier accepts
    nothing until then), or after restoring deleted revocation rows. The log is verified
    first as `attest audit verify` does, with the log key here: every revocation the
    store holds must have its entry, and every one the log records must be in the store.
    Exit 1 (nothing sealed) when it does not hold.
    """
    from attest.audit import keys
    from attest.audit.check import verify_log
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        log = AuditLog.open(store, ctx.obj.home)
        # The revocations become the set this verifier stands by: only once the log
        # shows each of them was made through attest, and none it made is missing.
        verify_log(store, log.verifier_key, keys.last_head_note(ctx.obj.home),
                   keys.load_own(ctx.obj.home))
        count = log.reseal_revocations()
    if as_json:
        echo_json({"ok": True, "sealed": count})
    else:
        click.echo(f"sealed {count} revocation(s)")


@audit.command()
@_STORE
@click.option("--sign", is_flag=True, help="Sign a head for the current size first, if needed.")
@json_option(help='Print {"ok": true, "size": N, "note": "<the checkpoint>"}.')
@click.pass_context
def head(ctx: click.Context, store_url: str | None, sign: bool, as_json: bool) -> None:
    """Print the latest signed tree head (a C2SP checkpoint): save it to audit later."""
    from attest.audit import keys
    from attest.audit.log import AuditLog
    from attest.audit.note import check_note_text
    from attest.errors import ProofError

    with open_store(ctx, store_url) as store:
        if sign:
            signed = AuditLog.open(store, ctx.obj.home).sign_head()
        else:
            found = AuditLog.open(store, None).latest_head()
            if found is None:
                raise UsageError("the audit log has no signed head yet",
                                 hint="sign one with `attest audit head --sign`")
            signed = found
    # The note comes from the database, which others may write: it is printed raw (an
    # auditor saves it), so only once it is a note, and the log key's where it is here.
    check_note_text(signed.note)
    key = keys.load_public(ctx.obj.home)
    if key is not None and key.open(signed.note).size != signed.size:
        raise ProofError(f"the stored head for size {signed.size} is for another size")
    if as_json:
        echo_json({"ok": True, "size": signed.size, "note": signed.note})
        return
    click.echo(signed.note, nl=False)


@audit.command()
@_STORE
@click.option("--key", "key_text", metavar="PUBKEY",
              help=_KEY_HELP + " [default: the log key in $ATTEST_HOME]")
@_JSON
@click.pass_context
def heads(ctx: click.Context, store_url: str | None, key_text: str | None,
          as_json: bool) -> None:
    """List every signed tree head: size, time, root and signature status.

    Consistency proofs (`attest audit consistency`) are made only between these sizes.
    The signature is checked with the log key (`unchecked` without one); exit 1 when any
    head fails it.
    """
    from attest.audit import keys
    from attest.audit.log import AuditLog

    key = _key(key_text) if key_text else keys.load_public(ctx.obj.home)
    with open_store(ctx, store_url) as store:
        listed = [_head_status(signed, key) for signed in AuditLog.open(store, None).all_heads()]
    bad = any(row["signature"] == "bad" for row in listed)
    if as_json:
        echo_json({"ok": not bad, "heads": listed})
    elif not listed:
        click.echo("no signed head yet (sign one with `attest audit head --sign`)", err=True)
    for row in [] if as_json else listed:
        problem = f" ({visible(row['problem'])})" if "problem" in row else ""
        click.echo(f"{row['size']:>10}  {row['signed_at']}  {row['root'] or '-'}  "
                   f"{row['signature']}{problem}")
    if bad:
        raise SystemExit(1)


@audit.command()
@json_option(help='Print {"ok": true, "verifier_key": "<name+id+key>"}.')
@click.pass_context
def key(ctx: click.Context, as_json: bool) -> None:
    """Print the log's verifier key (created on first use): what an auditor trusts."""
    from attest.audit import keys

    encoded = keys.load_or_create(ctx.obj.home).verifier_key.encode()
    if as_json:
        echo_json({"ok": True, "verifier_key": encoded})
    else:
        click.echo(encoded)


@audit.command()
@_STORE
@click.option("--index", type=click.IntRange(0, _MAX_INDEX), required=True, help="The entry.")
@click.option("--size", type=click.IntRange(1, _MAX_INDEX),
              help="The tree size to prove against [default: the latest signed head, signing "
              "one if none covers the entry].")
@json_option(help="Errors as JSON too (the proof is JSON either way).")
@click.pass_context
def prove(ctx: click.Context, store_url: str | None, index: int, size: int | None,
          as_json: bool) -> None:
    """Print an inclusion proof of an entry (JSON); a receipt when a head of that size is signed."""
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        if size is None:
            proof = AuditLog.open(store, ctx.obj.home).receipt(index)
        else:
            proof = AuditLog.open(store, None).inclusion_proof(index, size)
    echo_json(proof.to_json())


@audit.command()
@_STORE
@click.option("--from", "old_size", type=click.IntRange(1, _MAX_INDEX), required=True,
              help="The older tree size.")
@click.option("--to", "new_size", type=click.IntRange(1, _MAX_INDEX),
              help="The newer tree size [default: the latest signed head].")
@json_option(help="Errors as JSON too (the proof is JSON either way).")
@click.pass_context
def consistency(ctx: click.Context, store_url: str | None, old_size: int,
                new_size: int | None, as_json: bool) -> None:
    """Print a consistency proof between two tree sizes (JSON)."""
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        log = AuditLog.open(store, None)
        proof = log.consistency_proof(old_size, new_size)
        if proof.old_checkpoint is None or proof.new_checkpoint is None:
            # Without both signed heads the proof checks nothing offline: say which sizes do.
            signed = [head.size for head in log.all_heads()]
            unsigned = proof.old_size if proof.old_checkpoint is None else proof.new_size
            raise UsageError(f"no signed tree head of size {unsigned}: a consistency proof "
                             "is checkable only between signed sizes",
                             hint=_signed_sizes(signed, unsigned))
    echo_json(proof.to_json())


def _signed_sizes(signed: list[int], wanted: int) -> str:
    """Which signed sizes there are, the nearest to ``wanted`` first when there are many."""
    if not signed:
        return "the log has no signed head yet: sign one with `attest audit head --sign`"
    if len(signed) > 8:
        nearest = sorted(sorted(signed, key=lambda size: abs(size - wanted))[:4])
        return (f"the nearest signed sizes are {', '.join(map(str, nearest))} "
                f"({len(signed)} in all: `attest audit heads`)")
    return f"signed sizes: {', '.join(map(str, signed))} (`attest audit heads`)"


@audit.command()
@_STORE
@click.option("--from", "start", type=click.IntRange(0, _MAX_INDEX), default=0, show_default=True,
              help="The first index.")
@click.option("--to", "stop", type=click.IntRange(0, _MAX_INDEX),
              help="Stop before this index (a tree size) [default: the end of the log].")
@json_option(help="Errors as JSON too (entries are JSON lines either way).")
@click.pass_context
def export(ctx: click.Context, store_url: str | None, start: int, stop: int | None,
           as_json: bool) -> None:
    """Print entries as JSON lines, streamed: each line is exactly an entry's leaf data."""
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        log = AuditLog.open(store, None)
        out = sys.stdout.buffer  # the exact bytes: a line is the leaf data, hash it as is
        for entry in log.entries(start, stop):
            out.write(entry.data + b"\n")
        out.flush()


@audit.command("check-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_text", metavar="PUBKEY", required=True, help=_KEY_HELP)
@_JSON
def check_proof(proof_file: Path, key_text: str, as_json: bool) -> None:
    """Check a receipt or proof file offline, with only the log's verifier key.

    Exit 1 (proof_invalid) when the proof does not verify or the file is no proof.
    """
    from attest.audit.proofs import InclusionProof, parse_proof
    from attest.errors import ProofError

    data = read_input(proof_file, "proof", evidence=Reason.PROOF_INVALID)
    verifier_key = _key(key_text)  # the auditor's own trust anchor: bad usage if malformed
    # A proof is evidence: bytes that are no proof are refused, as a forged one is.
    try:
        document: Any = strictjson.loads(data)
    except strictjson.StrictJSONError as exc:
        raise ProofError(f"{proof_file} is not strict JSON: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise ProofError(f"{proof_file} is not JSON") from None
    try:
        proof = parse_proof(document)
    except MalformedInput as exc:
        raise ProofError(f"{proof_file} is not a proof: {exc.message}") from None
    if isinstance(proof, InclusionProof):
        checkpoint = proof.verify(verifier_key)
        if as_json:
            echo_json({"ok": True, "valid": True, "type": "inclusion", "index": proof.index,
                       "origin": checkpoint.origin, "size": checkpoint.size,
                       "root": _b64(checkpoint.root)})
            return
        click.echo(f"ok: entry {proof.index} is in {visible(checkpoint.origin)} at size "
                   f"{checkpoint.size}, root {_b64(checkpoint.root)}")
    else:
        old, new = proof.verify(verifier_key)
        if as_json:
            echo_json({"ok": True, "valid": True, "type": "consistency",
                       "origin": new.origin, "old_size": old.size, "size": new.size})
            return
        click.echo(f"ok: {visible(new.origin)} at size {new.size} extends size {old.size}")


def _record(store: Store, done: Verification) -> None:
    """``done`` kept in the store, where every replica's console reads it (its Audit
    page: attest.audit.verifications). A store that takes no write (a read-only role
    for an auditor) loses only that record: the verification's answer stands."""
    from attest.audit import verifications
    from attest.errors import AttestError
    from attest.store.db import DatabaseError

    try:
        verifications.record(store, done)
    except (AttestError, DatabaseError) as exc:
        click.echo(f"warning: the result was not recorded in the store: {exc}", err=True)


def _key(text: str) -> VerifierKey:
    from attest.audit.note import VerifierKey

    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # a key too long to be a file name
        is_file = False
    if is_file:
        text = read_input(path, "verifier key").decode(errors="replace")
    return VerifierKey.parse(text)


def _head_status(signed: SignedHead, key: VerifierKey | None) -> dict[str, Any]:
    """One row of `attest audit heads`: the stored head, its root, its signature checked."""
    from attest.audit.note import Checkpoint, unverified_text
    from attest.errors import ProofError

    row: dict[str, Any] = {"size": signed.size, "signed_at": _utc(signed.signed_at),
                           "root": None, "signature": "unchecked"}
    try:  # the database is writable by others: a head that doesn't parse is reported
        row["root"] = _b64(Checkpoint.from_body(unverified_text(signed.note)).root)
        if key is not None:
            checkpoint = key.open(signed.note)
            if checkpoint.size != signed.size:
                raise ProofError(f"it is stored as size {signed.size} but signs size "
                                 f"{checkpoint.size}")
            row["signature"] = "ok"
    except ProofError as exc:
        row |= {"signature": "bad", "problem": str(exc)}
    return row


def _utc(seconds: int) -> str:
    from datetime import UTC, datetime

    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError, TypeError):  # a time no clock gives
        return visible(seconds)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
