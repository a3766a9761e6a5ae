"""`attest key`: PCR-bound signing keys (and the approval files they sign under)."""

from __future__ import annotations

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
    tpm_from,
)
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.evidence.approval import MAX_APPROVAL_BYTES, Approval
from attest.host.runtime.log import RuntimeLog
from attest.inputfile import MAX_KEY_BYTES, read_prefix
from attest.streamdigest import stream_digests
from attest.tpm import keys as signing
from attest.tpm.files import write_public
from attest.tpm.hierarchy import load_identity

# How much of the payload is held at once while it is hashed.

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
    digests, size = stream_digests(in_file, ["sha256"],
                                   f"hashing {getattr(in_file, 'name', 'input')}")
    candidates = read_approvals(approvals)
    with tpm_from(ctx) as tpm:
        approved = (signing.choose_approval(tpm, candidates, int(time.time()))
                    if candidates else None)
        # Under the runtime log's lock, as issuance signs: attest's own measurements
        # wait instead of voiding the policy session (TPM_RC_PCR_CHANGED), and
        # concurrent signers do not overrun a simulator's three object slots.
        with RuntimeLog(ctx.obj.home).locked():
            tss = signing.sign_digest(tpm, record, digests["sha256"], approved)
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


def read_approvals(paths: Sequence[Path]) -> tuple[Approval, ...]:
    """The approval files named by --approval options (bounded reads, strict parsing)."""
    approvals: list[Approval] = []
    for path in paths:
        data = read_prefix(path, "approval", MAX_APPROVAL_BYTES)
        approvals.append(Approval.from_json(data))
    return tuple(approvals)
