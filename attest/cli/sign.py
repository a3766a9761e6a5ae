"""`attest sign`: sign files in the TPM into a self-proving DSSE bundle (docs/signing.md)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import BinaryIO

import click

from attest.cli.common import echo_json, tpm_from
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import EnvironmentProblem, UsageError
from attest.signing.bundle import MAX_PAYLOAD_BYTES
from attest.signing.statement import PAYLOAD_TYPE as STATEMENT_TYPE
from attest.signing.statement import Statement, Subject
from attest.streamdigest import stream_digests
from attest.tpm import keys as signing
from attest.tpm.files import write_public

RAW_PAYLOAD_TYPE = "application/octet-stream"


@click.command("sign", short_help="Sign files in the TPM into a self-proving DSSE bundle.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--statement", is_flag=True,
              help="Sign an in-toto Statement naming each file by its SHA-256 (implied by "
              "several files); without it the file's bytes are the payload.")
@click.option("--payload-type", default=RAW_PAYLOAD_TYPE, show_default=True,
              help="The DSSE payloadType of a file signed as it is.")
@click.option("--key", "key_name", default=signing.DEFAULT_KEY, show_default=True,
              help="The PCR-bound signing key (attest key create).")
@click.option("--out", "out_path", required=True,
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Where to write the bundle ('-' for stdout).")
@click.option("--boot-log", is_flag=True,
              help="Carry the TCG boot log too, for policies that appraise boot PCRs.")
@click.option("--approval", "approval_paths", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An authority's approval (keys created with --authority); repeatable: "
              "the newest unexpired one for the current PCR values is used.")
@click.option("--no-agent", is_flag=True,
              help="Open the TPM here even when a host agent answers (an unbatched "
              "signature, which openssl verifies directly).")
@json_option(help='Print {"ok", "out", "payload_type", "subjects", "batched": null | '
             '{"index", "size"}}.')
@click.pass_context
def sign(ctx: click.Context, files: tuple[Path, ...], statement: bool, payload_type: str,
         key_name: str, out_path: Path, boot_log: bool, approval_paths: tuple[Path, ...],
         no_agent: bool, as_json: bool) -> None:
    """Sign FILE... ('-' for stdin) with the PCR-bound key, inside the TPM, into a bundle
    carrying the key's certification, a quote bound to this signature and the runtime log.
    Refused when the sealed PCRs no longer hold the key's values.

    With `attest agent` running for this home, the agent signs: concurrent requests share
    one TPM signature (a Merkle batch; `attest docs signing`), and the bundle is checked
    here before it is written. --no-agent opens the TPM here instead."""
    from attest.cli.key import read_approvals
    from attest.host.sign import check_payload, sign_payload

    if [str(f) for f in files].count("-") > 1:
        raise UsageError("stdin ('-') can be read once")
    signing.check_name(key_name)
    approvals = read_approvals(approval_paths)
    subjects: list[Subject] = []
    if statement or len(files) > 1:
        for path in files:
            subjects.append(Subject(str(path), _digest(path)))
        payload_type, payload = STATEMENT_TYPE, Statement(tuple(subjects)).to_bytes()
    else:
        payload = _read_payload(files[0])
    check_payload(payload)
    batched: dict[str, int] | None = None
    sock = None if no_agent else _agent(ctx.obj.home)
    if sock is not None:
        from attest.host.agent.signclient import sign_through

        key = signing.load_key(ctx.obj.home, key_name)
        with sock:
            done = sign_through(sock, key=key_name, key_name=key.tpm_name,
                                key_public_pem=key.public_pem(), payload_type=payload_type,
                                payload=payload, boot_log=boot_log,
                                approvals=[a.to_bytes().decode("utf-8") for a in approvals])
        data = done.data
        batched = {"index": done.membership.index, "size": done.membership.size}
    else:
        with tpm_from(ctx) as tpm:
            bundle = sign_payload(tpm, ctx.obj.home, payload_type, payload, int(time.time()),
                                  key_name=key_name, include_boot_log=boot_log,
                                  approvals=approvals)
        data = bundle.to_bytes()
    if str(out_path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_public(out_path, data)
    if as_json:
        echo_json({"ok": True, "out": str(out_path), "payload_type": payload_type,
                   "subjects": [{"name": s.name, "sha256": s.sha256} for s in subjects],
                   "batched": batched})
        return
    what = f"{len(subjects)} file(s) as a statement" if subjects else f"{len(payload)} bytes"
    how = "" if batched is None else (f" through the agent (batch of {batched['size']}, "
                                      f"index {batched['index']})")
    click.echo(f"signed {what} with key {key_name!r} into {visible(out_path)}{how}")


def _agent(home: Path) -> socket.socket | None:
    """A connection to the host agent of ``home`` ($ATTEST_AGENT_SOCKET, else its
    agent.sock), or None when none answers; a socket that is there but not to be trusted
    is an error (exit 3), never a silent fallback (as the thin `attest run`)."""
    from attest.host.agent import client
    from attest.host.agent.wire import SOCKET_NAME

    path = os.environ.get("ATTEST_AGENT_SOCKET") or str(home / SOCKET_NAME)
    try:
        raw = client.connect(path)
    except client.AgentRefused as exc:
        raise EnvironmentProblem(exc.message) from None
    if raw is None:
        return None
    return socket.socket(fileno=raw.detach())


def _open(path: Path) -> BinaryIO:
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        return path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _digest(path: Path) -> str:
    """SHA-256 of a file, read in chunks: a file of any size is named by its digest."""
    stream = _open(path)
    try:
        return stream_digests(stream, ["sha256"], f"hashing {path}")[0]["sha256"].hex()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _read_payload(path: Path) -> bytes:
    stream = _open(path)
    try:
        data = stream.read(MAX_PAYLOAD_BYTES + 1)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"{path} is over the {MAX_PAYLOAD_BYTES} bytes a bundle carries",
                         hint="sign it with --statement: the statement names it by digest")
    return data
