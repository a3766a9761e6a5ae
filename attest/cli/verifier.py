"""The verifier's commands: verify, challenge, revoke, enroll, policy init."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from attest.certfiles import certificate_files
from attest.cli.common import echo_json, read_input, tpm_from
from attest.cli.terminal import visible
from attest.errors import UsageError
from attest.store import Store, default_url

_STORE = click.option("--store", "store_url", metavar="URL",
                      help="The verifier's store [default: $ATTEST_STORE, else "
                      "sqlite:///$ATTEST_HOME/verifier.db].")
_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def open_store(ctx: click.Context, url: str | None) -> Store:
    return Store.open(url or os.environ.get("ATTEST_STORE") or default_url(ctx.obj.home))


@click.command("verify")
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The verifier policy (YAML).")
@_STORE
@click.option("--verifier-id", help="This verifier's id; artifacts for another aud are denied.")
@_JSON
@click.pass_context
def verify(ctx: click.Context, artifact: Path, policy_path: Path, store_url: str | None,
           verifier_id: str | None, as_json: bool) -> None:
    """Verify an authorization artifact against a policy: exit 0 accepted, 1 denied.

    Every failed check is reported with its reason code (docs/reasons.md).
    """
    from attest.audit.log import AuditLog
    from attest.policy import load_policy
    from attest.verify.audited import verify_logged
    from attest.verify.verifier import Verifier

    policy = load_policy(policy_path)
    raw = read_input(artifact, "artifact")
    with open_store(ctx, store_url) as store:
        log = AuditLog.open(store, ctx.obj.home)
        decision = verify_logged(Verifier(policy, store, verifier_id=verifier_id), log, raw)
    if as_json:
        echo_json(decision.to_json())
    elif decision.accepted:
        # Subject, argv, host and jti are the artifact's words: one line, escaped.
        argv = " ".join(decision.facts.get("argv", []))
        click.echo(f"accepted: {visible(decision.subject)} may "
                   f"{visible(decision.facts.get('action'))} {visible(repr(argv))} on "
                   f"{visible(decision.host)} (jti {visible(decision.jti)})")
    else:
        click.echo(f"denied: {', '.join(decision.reasons)}", err=True)
        for denial in decision.denials:
            click.echo(f"  {denial.reason.value}: {visible(denial.message)}", err=True)
    if not decision.accepted:
        raise SystemExit(1)


@click.command()
@click.option("--ttl", default="120s", show_default=True, help="How long the nonce is usable.")
@_STORE
@_JSON
@click.pass_context
def challenge(ctx: click.Context, ttl: str, store_url: str | None, as_json: bool) -> None:
    """Issue a single-use nonce (base64url) for `attest authorize --nonce`."""
    from attest.artifact.issue import parse_duration

    seconds = parse_duration(ttl, "--ttl")
    now = int(time.time())
    with open_store(ctx, store_url) as store:
        nonce = store.issue_nonce(seconds, now)
    if as_json:
        echo_json({"nonce": nonce, "expires": now + seconds})
    else:
        click.echo(nonce)


@click.command()
@click.option("--jti", help="An artifact (and every artifact derived from it).")
@click.option("--key", "kid", metavar="KID", help="A signing key, by its TPM name (hex, the kid).")
@click.option("--ak", metavar="NAME", help="An AK, by its TPM name (hex).")
@click.option("--host", help="A host id: every AK it has enrolled.")
@click.option("--reason", required=True, help="Why: it is recorded and shown in every denial.")
@_STORE
@_JSON
@click.pass_context
def revoke(ctx: click.Context, jti: str | None, kid: str | None, ak: str | None, host: str | None,
           reason: str, store_url: str | None, as_json: bool) -> None:
    """Revoke an artifact (and its descendants), a key, an AK or a host."""
    given = [(name, value) for name, value in (("jti", jti), ("key", kid), ("ak", ak),
                                                ("host", host)) if value]
    if len(given) != 1:
        raise UsageError("give exactly one of --jti, --key, --ak, --host")
    (kind, value), = given
    now = int(time.time())
    revoked: list[str] = [value]
    from attest.audit.hooks import record_revocation
    from attest.audit.log import AuditLog
    from attest.store import RevocationKind

    with open_store(ctx, store_url) as store:
        if kind == "jti":
            revoked = store.revoke_artifact(value, reason, now)
        elif kind == "key":
            store.revoke_key(value, reason, now)
        elif kind == "ak":
            store.revoke_ak(value, reason, now)
        else:
            store.revoke_host(value, reason, now)
        log = AuditLog.open(store, ctx.obj.home)
        for subject in revoked:
            record_revocation(log, RevocationKind(kind), subject, reason, now=now)
    if as_json:
        echo_json({"revoked": kind, "subjects": revoked, "reason": reason})
    else:
        more = f" and {len(revoked) - 1} descendants" if len(revoked) > 1 else ""
        click.echo(f"revoked {kind} {value}{more}: {reason}")


@click.command()
@click.option("--ak", "ak_name", required=True, metavar="NAME", help="The AK's TPM name (hex).")
@click.option("--reason", required=True, help="Why the reset is acceptable; it is logged.")
@_STORE
@click.pass_context
def readmit(ctx: click.Context, ak_name: str, reason: str, store_url: str | None) -> None:
    """Re-admit an AK after a TPM reset (a policy with deny_reset refuses it until then).

    The next quote from that AK starts a new boot epoch as if it were the first.
    """
    from attest.audit.entry import Entry, EntryKind, Outcome
    from attest.audit.log import AuditLog

    try:
        name = bytes.fromhex(ak_name)
    except ValueError:
        raise UsageError(f"--ak is not hex: {ak_name!r}") from None
    with open_store(ctx, store_url) as store:
        forgotten = store.forget_clock(name)
        AuditLog.open(store, ctx.obj.home).record(Entry(
            kind=EntryKind.REVOCATION, decision=Outcome.READMITTED, time=int(time.time()),
            reasons=(reason,), subject=name.hex()))
    click.echo(f"re-admitted AK {ak_name[:16]}…" + ("" if forgotten else
               " (no clock was recorded for it: nothing to forget)"))


@click.command()
@click.option("--host", "host_id", help="The host id to enroll under [default: the hostname].")
@click.option("--ek-roots", "ek_roots", multiple=True, metavar="PATH",
              type=click.Path(exists=True, path_type=Path),
              help="Roots the EK certificate must chain to (repeatable).")
@_STORE
@_JSON
@click.pass_context
def enroll(ctx: click.Context, host_id: str | None, ek_roots: tuple[Path, ...],
           store_url: str | None, as_json: bool) -> None:
    """Enroll this host's AK with a local verifier store, by credential activation.

    The verifier side wraps a secret to the EK (checked against --ek-roots) and the
    AK's name; only this TPM can unwrap it, and only for that AK.
    """
    import secrets
    import socket
    from datetime import UTC, datetime

    from attest.evidence.credential import make_credential
    from attest.evidence.ekcert import verify_chain
    from attest.evidence.structures import parse_public_tpm2b
    from attest.tpm.hierarchy import EK_RSA, activate_credential, load_identity

    identity = load_identity(ctx.obj.home)
    ek = next((e for e in identity.eks if e.kind == EK_RSA.label), None)
    if ek is None:
        raise UsageError("this host has no RSA EK to enroll with")
    roots = [read_input(p, "root") for r in ek_roots for p in certificate_files(r)]
    if roots:
        if ek.certificate is None:
            raise UsageError("the EK has no certificate to check against --ek-roots")
        verify_chain(ek.certificate, roots, at=datetime.now(UTC))
    secret = secrets.token_bytes(32)
    credential = make_credential(parse_public_tpm2b(ek.public), secret, identity.ak_name)
    with tpm_from(ctx) as tpm:
        recovered = activate_credential(tpm, identity, credential.credential_blob,
                                        credential.encrypted_secret, EK_RSA)
    if recovered != secret:
        raise UsageError("credential activation returned another secret: the AK is not "
                         "in the TPM that holds this EK")
    host = host_id or socket.gethostname()
    from attest.audit.hooks import record_enrollment
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        store.enroll(host, identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                     ek.certificate, int(time.time()))
        record_enrollment(AuditLog.open(store, ctx.obj.home), host, identity.ak_name)
    result: dict[str, Any] = {"host": host, "ak": identity.ak_name.hex(),
                              "ek_chain": "verified" if roots else "not checked"}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"enrolled AK {identity.ak_name.hex()[:16]}… as host {host} "
                   f"(credential activated; EK chain {result['ek_chain']})")


@click.command("init")
@click.option("--from-host", is_flag=True, required=True,
              help="Trust this host as it is now (the only source for now).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--id", "policy_id", default="local", show_default=True, help="The policy's id.")
@click.option("--key", "key_name", default="default", show_default=True,
              help="The signing key whose sealed PCRs the policy expects.")
@click.option("--ek-roots", "ek_roots", multiple=True, metavar="PATH",
              help="EK roots to write into the policy (relative to --out's folder or absolute).")
@click.option("--enrollment", type=click.Choice(["policy", "store"]), default="policy",
              show_default=True, help="policy: trust this host's AK by listing it; store: "
              "trust what `attest enroll` put in the verifier's store.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.pass_context
def policy_init(ctx: click.Context, from_host: bool, out_file: Path, policy_id: str,
                key_name: str, ek_roots: tuple[str, ...], enrollment: str, force: bool) -> None:
    """Write a verifier policy that trusts this host as it is now.

    Its EK roots, its AK, its key's sealed PCR values, its runtime measurements so far
    as reference values, single-use artifacts; comments explain every field.
    """
    from attest.eventlog.cel import parse_cel
    from attest.policy import NonceMode, TrustedAK, render_policy
    from attest.runtime.log import RuntimeLog, log_pcr, runtime_pcr
    from attest.tpm import keys as signing
    from attest.tpm.files import write_public
    from attest.tpm.hierarchy import load_identity

    del from_host  # required flag: the only source today, named for the reader
    if out_file.exists() and not force:
        raise UsageError(f"{out_file} exists", hint="pass --force to overwrite it")
    identity = load_identity(ctx.obj.home)
    key = signing.load_key(ctx.obj.home, key_name)
    if key.kind != "pcr":
        raise UsageError("policy init writes a PCR key policy; this key is authority-bound",
                         hint="write key_policy by hand (docs/policy.md)")
    banks = {bank for bank, _ in key.selection.banks}
    if len(banks) != 1:
        raise UsageError("the key is sealed to PCRs of several banks; policy init handles one")
    bank = banks.pop()
    runtime = RuntimeLog(ctx.obj.home)
    records = parse_cel(runtime.path.read_bytes()).records if runtime.path.exists() else ()
    reference: dict[str, list[bytes]] = {}
    for record in records:
        name, measured = record.content.get("name"), record.content.get("digest")
        if isinstance(name, str) and isinstance(measured, dict) and bank in measured:
            reference.setdefault(name, []).append(bytes.fromhex(measured[bank]))
    trusted = ([TrustedAK(host=os.uname().nodename, ak_public=identity.ak_public,
                          ak_qualified_name=identity.ak_qualified_name or None)]
               if enrollment == "policy" else [])
    text = render_policy(
        policy_id=policy_id,
        sealed_values={i: v for (b, i), v in key.sealed_values.items() if b == bank},
        bank=bank, runtime_pcr=log_pcr(records) or runtime_pcr(allow_resettable=True),
        ek_roots=list(ek_roots), trusted_aks=trusted, runtime_reference=reference,
        nonce=NonceMode.OPTIONAL, single_use=True,
        header=f"Written by `attest policy init --from-host` on {os.uname().nodename}.")
    write_public(out_file, text.encode())
    click.echo(f"wrote {out_file}: trusts AK {identity.ak_name.hex()[:16]}…, key {key.name!r} "
               f"sealed to {key.selection}, {len(reference)} runtime reference value(s)")
