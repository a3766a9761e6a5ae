"""`attest key` and `attest policy approve`: PCR-bound signing keys."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import click

from attest.cli.common import (
    echo_json,
    parse_hex,
    parse_selection,
    read_input,
    read_prefix,
    tpm_from,
)
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import UsageError
from attest.evidence.approval import MAX_APPROVAL_BYTES, MAX_SERIAL, Approval
from attest.evidence.pcrs import DIGEST_SIZES
from attest.inputfile import MAX_KEY_BYTES
from attest.runtime.log import RuntimeLog
from attest.tpm import keys as signing
from attest.tpm.files import write_public
from attest.tpm.hierarchy import load_identity
from attest.tpm.pcr import read_pcrs

# How much of the payload is held at once while it is hashed.
_CHUNK = 1 << 20

# An approval's --expires: ten years, far beyond any PCR values' life.
MAX_APPROVAL_LIFETIME_S = 3650 * 86400

_NAME = click.option("--name", default=signing.DEFAULT_KEY, show_default=True,
                     help="The key's name in the home.")


@click.group(short_help="PCR-bound signing keys: create, sign, certify, list.")
def key() -> None:
    """PCR-bound signing keys: they sign only while the sealed PCRs hold their values."""


@key.command()
@_NAME
@click.option("--pcrs", metavar="BANK:LIST",
              help=f"Sealed PCRs: the platform state the key lives in "
              f"[default: {signing.DEFAULT_SEALED_PCRS}; not with --authority].")
@click.option("--authority", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="PEM public key of an authority: the key then signs under the PCR values "
              "that authority approves (PolicyAuthorize) instead of today's values.")
@click.option("--policy-ref", default="", metavar="HEX",
              help="With --authority: a policyRef bound into the key; approvals must carry it.")
@json_option(help='Print {"ok", "name", "kind", "pcrs", "policy_digest", "public_key"}.')
@click.pass_context
def create(ctx: click.Context, name: str, pcrs: str | None, authority: Path | None,
           policy_ref: str, as_json: bool) -> None:
    """Create a signing key bound to the current values of the sealed PCRs."""
    if authority is None and pcrs is None:
        pcrs = signing.DEFAULT_SEALED_PCRS
    selection = parse_selection(pcrs) if pcrs is not None else None
    signing.check_name(name)
    authority_pem = (read_input(authority, "authority key", MAX_KEY_BYTES)
                     if authority else None)
    ref = parse_hex(policy_ref, "--policy-ref", 64)
    with tpm_from(ctx) as tpm:
        made = signing.create_key(tpm, ctx.obj.home, name, selection, authority_pem, ref)
    folder = signing.key_dir(ctx.obj.home, name)
    bound = f"PCRs {selection}" if made.kind == "pcr" else f"approvals by {authority}"
    if as_json:
        echo_json({"ok": True, "name": name, "kind": made.kind,
                   "pcrs": None if selection is None else str(selection),
                   "policy_digest": made.policy_digest.hex(),
                   "public_key": str(folder / "key.pem")})
        return
    click.echo(f"created key {name!r} bound to {bound}")
    click.echo(f"policy digest: {made.policy_digest.hex()}")
    click.echo(f"public key:    {visible(folder / 'key.pem')}")


@key.command()
@_NAME
@click.option("--in", "in_file", required=True, type=click.File("rb"),
              help="Data to sign ('-' for stdin); it is hashed with SHA-256.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the signature.")
@click.option("--format", "fmt", type=click.Choice(["der", "tss"]), default="der",
              show_default=True, help="der: ASN.1 ECDSA (openssl dgst -verify); "
              "tss: TPMT_SIGNATURE (tpm2_verifysignature).")
@click.option("--approval", "approvals", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An authority's approval (for keys created with --authority); repeatable: "
              "the newest unexpired one for the current PCR values is used.")
@json_option(help='Print {"ok", "name", "bytes", "out", "format"}.')
@click.pass_context
def sign(ctx: click.Context, name: str, in_file: BinaryIO, out_file: Path, fmt: str,
         approvals: tuple[Path, ...], as_json: bool) -> None:
    """Sign a file inside a policy session (fails when the sealed PCRs changed)."""
    record = signing.load_key(ctx.obj.home, name)
    # Hashed as it is read, in chunks: a payload of any size (an image, a pipe) signs in
    # constant memory; the TPM signs only the digest anyway.
    hasher, size = hashlib.sha256(), 0
    while chunk := in_file.read(_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    candidates = read_approvals(approvals)
    with tpm_from(ctx) as tpm:
        approved = (signing.choose_approval(tpm, candidates, int(time.time()))
                    if candidates else None)
        # Under the runtime log's lock, as issuance signs: attest's own measurements
        # wait instead of voiding the policy session (TPM_RC_PCR_CHANGED), and
        # concurrent signers do not overrun a simulator's three object slots.
        with RuntimeLog(ctx.obj.home).locked():
            tss = signing.sign_digest(tpm, record, hasher.digest(), approved)
    write_public(out_file, tss if fmt == "tss" else signing.signature_to_der(tss))
    if as_json:
        echo_json({"ok": True, "name": name, "bytes": size, "out": str(out_file),
                   "format": fmt})
        return
    click.echo(f"signed {size} bytes with key {name!r} into {visible(out_file)} ({fmt})")


@key.command()
@_NAME
@click.option("--nonce", required=True, metavar="HEX", help="Qualifying data, hex.")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for certify.msg, certify.sig, key.pub (TPM2B_PUBLIC), key.pem.")
@json_option(help='Print {"ok", "name", "out_dir", "files"}.')
@click.pass_context
def certify(ctx: click.Context, name: str, nonce: str, out_dir: Path, as_json: bool) -> None:
    """Certify the key with the AK (TPM2_Certify): proof that it lives in this TPM."""
    qualifying = parse_hex(nonce, "--nonce", 64)
    record = signing.load_key(ctx.obj.home, name)
    identity = load_identity(ctx.obj.home)
    with tpm_from(ctx) as tpm:
        message, signature = signing.certify(tpm, identity, record, qualifying)
    write_public(out_dir / "certify.msg", message)
    write_public(out_dir / "certify.sig", signature)
    write_public(out_dir / "key.pub", record.public)
    write_public(out_dir / "key.pem", record.public_pem())
    if as_json:
        echo_json({"ok": True, "name": name, "out_dir": str(out_dir),
                   "files": ["certify.msg", "certify.sig", "key.pub", "key.pem"]})
        return
    click.echo(f"certified key {name!r} with the AK into {visible(out_dir)}/")


@key.command("list")
@json_option(help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the signing keys in the home."""
    records = signing.list_keys(ctx.obj.home)
    if as_json:
        echo_json([{"name": k.name, "kind": k.kind, "pcrs": str(k.selection),
                    "policy_digest": k.policy_digest.hex(), "tpm_name": k.tpm_name.hex()}
                   for k in records])
        return
    if not records:
        click.echo("no signing keys; create one with `attest key create`")
    for k in records:
        bound = str(k.selection) if k.kind == "pcr" else "PCRs as approved"
        click.echo(f"{k.name:<16} {k.kind:<9} {bound}  policy {k.policy_digest.hex()[:16]}…")


@click.group(short_help="Key policies: approvals by an authority.")
def policy() -> None:
    """Key policies: approvals by an authority."""


@policy.command()
@click.option("--authority-key", required=True, type=click.Path(dir_okay=False, exists=True,
              path_type=Path), help="The authority's private key (PEM, unencrypted).")
@click.option("--pcrs", "pcr_specs", required=True, multiple=True, metavar="BANK:I[=HEX]",
              help="PCRs to approve, e.g. sha256:0,1,2 (values read from the TPM) or "
              "sha256:7=<hex> (value given; no TPM needed when every value is given).")
@click.option("--policy-ref", default="", metavar="HEX", help="policyRef, hex (default empty).")
@click.option("--serial", required=True, type=click.IntRange(0, MAX_SERIAL),
              help="This approval's place in the authority's order: higher than every earlier "
              "approval's, so that verifiers can retire older ones (min_approval_serial).")
@click.option("--expires", metavar="DURATION",
              help="Verifiers deny the approval this long after now, e.g. 90d (default: never).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the approval (JSON).")
@json_option(help='Print {"ok", "id", "serial", "pcrs", "approved_policy", "expires", "out"}.')
@click.pass_context
def approve(ctx: click.Context, authority_key: Path, pcr_specs: tuple[str, ...], policy_ref: str,
            serial: int, expires: str | None, out_file: Path, as_json: bool) -> None:
    """Approve PCR values for keys created with --authority (PolicyAuthorize)."""
    not_after = None
    if expires is not None:
        from attest.cli.common import parse_duration

        not_after = int(time.time()) + parse_duration(expires, "--expires",
                                                      MAX_APPROVAL_LIFETIME_S)
    given: dict[tuple[str, int], bytes] = {}
    lists: list[str] = []
    for spec in pcr_specs:
        if "=" in spec:
            where, _, value = spec.partition("=")
            sel = parse_selection(where)
            if len(sel) != 1:
                raise UsageError(f"{spec!r}: give one PCR per value, e.g. sha256:7=<hex>")
            (bank, index), = list(sel)
            digest = parse_hex(value, f"value of {where}")
            if len(digest) != DIGEST_SIZES[bank]:
                raise UsageError(f"{where}: a {bank} value is {DIGEST_SIZES[bank]} bytes")
            given[(bank, index)] = digest
            lists.append(where)
        else:
            lists.append(spec)
    selection = parse_selection("+".join(lists))
    values = dict(given)
    missing = [k for k in selection if k not in values]
    if missing:
        from attest.evidence.pcrs import PCRSelection

        with tpm_from(ctx) as tpm:
            current = read_pcrs(tpm, PCRSelection.from_pairs(missing))
        values.update(current)
    made = signing.approve(read_input(authority_key, "authority key", MAX_KEY_BYTES),
                           selection, values,
                           parse_hex(policy_ref, "--policy-ref", 64), serial=serial,
                           not_after=not_after)
    write_public(out_file, made.to_json().encode())
    if as_json:
        echo_json({"ok": True, "id": made.id, "serial": serial, "pcrs": str(selection),
                   "approved_policy": made.approved_policy.hex(), "expires": not_after,
                   "out": str(out_file)})
        return
    click.echo(f"approved {selection} (policy {made.approved_policy.hex()}) into "
               f"{visible(out_file)}")
    click.echo(f"approval id {made.id} (serial {serial}"
               + (f", expires {not_after})" if not_after is not None else ")"))


def read_approvals(paths: Sequence[Path]) -> tuple[Approval, ...]:
    """The approval files named by --approval options (bounded reads, strict parsing)."""
    approvals: list[Approval] = []
    for path in paths:
        data = read_prefix(path, "approval", MAX_APPROVAL_BYTES)
        approvals.append(Approval.from_json(data))
    return tuple(approvals)
