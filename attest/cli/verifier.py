"""The verifier's commands: verify, challenge, revoke, readmit, enroll."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from attest.certfiles import certificate_files
from attest.cli.common import echo_json, read_input, tpm_from, utf8_text
from attest.cli.failure import Failure, json_option
from attest.cli.terminal import visible
from attest.errors import (
    EXIT_REFUSED,
    EvidenceError,
    TPMError,
    UsageError,
)
from attest.inputfile import read_prefix
from attest.reasons import Reason
from attest.store import RevocationKind, Store, default_url

if TYPE_CHECKING:
    from attest.audit.entry import Entry
    from attest.audit.log import AuditLog
    from attest.decision import Decision
    from attest.evidence.structures import Public
    from attest.store.db import Transaction

_STORE = click.option("--store", "store_url", metavar="URL",
                      help="The verifier's store [default: $ATTEST_STORE, else "
                      "sqlite:///$ATTEST_HOME/verifier.db].")
_JSON = json_option(help="Machine-readable output.")


def open_store(ctx: click.Context, url: str | None) -> Store:
    chosen = url or os.environ.get("ATTEST_STORE")
    if not chosen:
        # Honest first use: the default store lives in the home, which may not exist yet.
        # An OSError here is rendered by the top group: usage or environment, with the path.
        home: Path = ctx.obj.home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        chosen = default_url(home)
    return Store.open(chosen)


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

    Every failed check is reported with its reason code (`attest docs reasons`).
    """
    from attest.artifact.model import MAX_ARTIFACT_BYTES
    from attest.audit.log import AuditLog
    from attest.policy import load_policy
    from attest.policy.trust import load_trust
    from attest.verify.verifier import Verifier

    policy = load_policy(policy_path)
    trust = load_trust(policy)  # the EK roots, read once: no file is read while verifying
    # An artifact larger than any is still denied (and logged): a prefix that shows it.
    raw = read_prefix(artifact, "artifact", MAX_ARTIFACT_BYTES)
    with open_store(ctx, store_url) as store:
        log = AuditLog.open(store, ctx.obj.home)
        decision = Verifier(policy, store, log, verifier_id=verifier_id, trust=trust).verify(raw)
    if as_json:
        echo_json(decision_json(decision))
    elif decision.accepted:
        # Subject, argv, host and jti are the artifact's words: one line, escaped.
        argv = " ".join(decision.facts.get("argv", []))
        click.echo(f"accepted: {visible(decision.subject)} may "
                   f"{visible(decision.facts.get('action'))} {visible(repr(argv))} on "
                   f"{visible(decision.host)} (jti {visible(decision.jti)})")
    if not decision.accepted:
        # The person's text on stderr, --json or not, as every failing command's.
        click.echo(f"denied: {', '.join(decision.reasons)}", err=True)
        for denial in decision.denials:
            click.echo(f"  {denial.reason.value}: {visible(denial.message)}", err=True)
        raise SystemExit(1)


def decision_json(decision: Decision) -> dict[str, Any]:
    """The decision, with "ok" and, for a denial, "error" as every failing --json command."""
    out: dict[str, Any] = {"ok": decision.accepted, **decision.to_json()}
    if not decision.accepted:
        first = decision.denials[0] if decision.denials else None
        out.update(Failure(EXIT_REFUSED, "; ".join(d.message for d in decision.denials)
                           or "denied", first.reason.value if first else None).to_json())
    return out


@click.command()
@click.option("--ttl", default="120s", show_default=True, metavar="DURATION",
              help="How long the nonce is usable: 1s to 7d.")
@_STORE
@_JSON
@click.pass_context
def challenge(ctx: click.Context, ttl: str, store_url: str | None, as_json: bool) -> None:
    """Issue a single-use nonce (base64url) for `attest authorize --nonce`."""
    from attest.cli.common import parse_duration

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
@click.option("--ek", metavar="ID", help="A TPM, by its EK id (`attest enroll --json` prints "
              "it): it and every AK activated under it, whatever host id holds them.")
@click.option("--approval", metavar="ID",
              help="An authority's approval, by its id (`attest policy approve` prints it): "
              "artifacts signed under it are denied.")
@click.option("--reason", required=True, help="Why: it is recorded and shown in every denial.")
@_STORE
@_JSON
@click.pass_context
def revoke(ctx: click.Context, jti: str | None, kid: str | None, ak: str | None, host: str | None,
           ek: str | None, approval: str | None, reason: str, store_url: str | None,
           as_json: bool) -> None:
    """Revoke an artifact (and its descendants), a key, an AK, a host, a TPM or an approval."""
    given = [(name, value) for name, value in (("jti", jti), ("key", kid), ("ak", ak),
                                                ("host", host), ("ek", ek),
                                                ("approval", approval)) if value]
    if len(given) != 1:
        raise UsageError("give exactly one of --jti, --key, --ak, --host, --ek, --approval")
    (kind, value), = given
    value, reason = utf8_text(value, f"--{kind}"), utf8_text(reason, "--reason")
    from attest.audit.hooks import revoke_logged
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        # The revocation, its cascade, their seals and entries commit together: none is in
        # force unlogged, and none a database writer deletes is lifted for the audited
        # verifier (attest.audit.revseals).
        cascade = revoke_logged(store, AuditLog.open(store, ctx.obj.home),
                                RevocationKind(kind), value, reason, now=int(time.time()))
    revoked = [subject for _, subject in cascade]
    value = revoked[0]  # as the store keys it (TPM names in lowercase hex): revoke_logged
    if as_json:
        out: dict[str, Any] = {"revoked": kind, "subjects": revoked, "reason": reason}
        if kind == "host":
            out["identity"] = [f"{k.value}:{subject}" for k, subject in cascade[1:]]
        echo_json(out)
    elif kind == "ek":
        click.echo(f"revoked the TPM of EK {value} and {len(cascade) - 1} AK(s): {visible(reason)}")
    elif kind == "host":
        eks = sum(1 for k, _ in cascade if k is RevocationKind.EK)
        click.echo(f"revoked host {visible(value)} with its TPM identity ({eks} EK(s), "
                   f"{len(cascade) - 1 - eks} AK(s)): {visible(reason)}")
    else:
        more = f" and {len(revoked) - 1} descendants" if len(revoked) > 1 else ""
        click.echo(f"revoked {kind} {visible(value)}{more}: {visible(reason)}")


@click.command()
@click.option("--ak", "ak_name", required=True, metavar="NAME", help="The AK's TPM name (hex).")
@click.option("--reason", required=True, help="Why the reset is acceptable; it is logged.")
@_STORE
@json_option(help='Print {"ok", "ak", "forgot_clock"}.')
@click.pass_context
def readmit(ctx: click.Context, ak_name: str, reason: str, store_url: str | None,
            as_json: bool) -> None:
    """Re-admit an AK after a TPM reset (a policy with deny_reset refuses it until then).

    Admits the reset already refused (or else the next one) as the AK's current boot;
    artifacts made before the reset stay refused.
    """
    from attest.audit.hooks import readmission_entry
    from attest.audit.log import AuditLog

    try:
        name = bytes.fromhex(ak_name)
    except ValueError:
        raise UsageError(f"--ak is not hex: {ak_name!r}") from None
    reason = utf8_text(reason, "--reason")
    with open_store(ctx, store_url) as store:
        log = AuditLog.open(store, ctx.obj.home)
        entry = readmission_entry(name, reason, time=int(time.time()))
        forgotten = store.forget_clock(name, in_transaction=lambda tx: _append(log, tx, entry))
    if as_json:
        echo_json({"ok": True, "ak": name.hex(), "forgot_clock": bool(forgotten)})
        return
    click.echo(f"re-admitted AK {visible(ak_name[:16])}…" + ("" if forgotten else
               " (no clock was recorded for it: nothing to forget)"))


@click.command()
@click.option("--host", "host_id", help="The host id to enroll under [default: the hostname].")
@click.option("--ek-roots", "ek_roots", multiple=True, metavar="PATH",
              type=click.Path(exists=True, path_type=Path),
              help="Roots the EK certificate must chain to (repeatable).")
@click.option("--move-host", is_flag=True,
              help="Administrator: give the host id to this TPM although another TPM's EK "
              "holds it (the TPM was replaced). Recorded in the audit log.")
@click.option("--verifier", "verifier_url", metavar="URL",
              help="Enroll with a verifier service instead of a local store: an https URL, "
              "or http to this machine (`attest docs service`, Enrollment).")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --verifier: the CA certificate(s) (PEM) the service's TLS "
              "certificate must chain to [default: the system's].")
@click.option("--insecure", is_flag=True,
              help="With --verifier: allow plain http to another machine. Anyone on the path "
              "can then change the host id enrolled or answer in the verifier's place.")
@_STORE
@_JSON
@click.pass_context
def enroll(ctx: click.Context, host_id: str | None, ek_roots: tuple[Path, ...], move_host: bool,
           verifier_url: str | None, cacert: Path | None, insecure: bool,
           store_url: str | None, as_json: bool) -> None:
    """Enroll this host's AK with a local verifier store, by credential activation, or
    with a verifier service (--verifier).

    The verifier side wraps a secret to the EK in the EK certificate (checked against
    --ek-roots, or the service's policy) and the AK's name; only the TPM that holds that
    EK can unwrap it, and only for that AK. A host id belongs to one EK; a revoked host,
    EK or AK is not enrolled again.
    """
    import secrets
    import socket

    from attest.evidence.credential import make_credential
    from attest.tpm.hierarchy import (
        EK_RSA,
        activate_credential,
        credential_refused,
        load_identity,
    )

    host = utf8_text(host_id or socket.gethostname(), "--host")
    if verifier_url is not None:
        if ek_roots or move_host or store_url:
            raise UsageError("--verifier enrolls with the service: its policy names the EK "
                             "roots and its store; --ek-roots, --move-host and --store are "
                             "for a local store")
        _enroll_remote(ctx, host, verifier_url, cacert, insecure, as_json)
        return
    if cacert is not None or insecure:
        raise UsageError("--cacert and --insecure go with --verifier")
    identity = load_identity(ctx.obj.home)
    named_ak(identity)  # the public area recorded is the one credential activation binds
    ek = next((e for e in identity.eks if e.kind == EK_RSA.label), None)
    if ek is None:
        raise UsageError("this host has no RSA EK to enroll with")
    roots = [read_input(p, "root") for r in ek_roots for p in certificate_files(r)]
    ek_public, ek_identity = _enrollment_ek(ek.certificate, ek.public, roots)
    secret = secrets.token_bytes(32)
    credential = make_credential(ek_public, secret, identity.ak_name)
    with tpm_from(ctx) as tpm:
        try:
            recovered = activate_credential(tpm, identity, credential.credential_blob,
                                            credential.encrypted_secret, EK_RSA)
        except TPMError as exc:
            # A TPM that refuses the credential does not hold the certificate's EK.
            if not credential_refused(tpm, exc):
                raise
            raise EvidenceError(f"credential activation failed ({exc.message}): this TPM "
                                "does not hold the EK of its EK certificate",
                                reason=Reason.EK_CHAIN_INVALID,
                                hint="the certificate belongs to another TPM; do not enroll "
                                "this host") from None
    if recovered != secret:
        raise EvidenceError("credential activation returned another secret: the AK is not "
                            "in the TPM that holds this EK", reason=Reason.EK_CHAIN_INVALID)
    from attest.audit.hooks import enroll_logged
    from attest.audit.log import AuditLog

    with open_store(ctx, store_url) as store:
        # The enrollment, a move of the host id, their entries and the enrollment's seal
        # commit together: no AK is trusted unlogged, and only sealed ones at all.
        moved = enroll_logged(store, AuditLog.open(store, ctx.obj.home), host,
                              identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                              ek.certificate, ek=ek_identity, move_host=move_host,
                              now=int(time.time()))
    result: dict[str, Any] = {"host": host, "ak": identity.ak_name.hex(), "ek": ek_identity,
                              "ek_chain": "verified" if roots else "not checked",
                              "moved_from_ek": None if moved is None else moved.previous}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"enrolled AK {identity.ak_name.hex()[:16]}… as host {visible(host)} "
                   f"(credential activated; EK chain {result['ek_chain']})"
                   + ("" if moved is None else
                      f"; host id moved from EK {(moved.previous or 'not recorded')[:16]}…"))


def _enroll_remote(ctx: click.Context, host: str, url: str, cacert: Path | None,
                   insecure: bool, as_json: bool) -> None:
    """`attest enroll --verifier`: attest.host.enroll does the exchange."""
    from attest.host.enroll import enroll_remote
    from attest.host.http import check_verifier_url, tls_context
    from attest.tpm.hierarchy import load_identity

    # Both before the TPM is touched: a bad URL or CA file is usage.
    check_verifier_url(url, insecure=insecure)
    if cacert is not None:
        tls_context(cacert)
    identity = load_identity(ctx.obj.home)
    named_ak(identity)
    with tpm_from(ctx) as tpm:
        done = enroll_remote(tpm, identity, url, host, cacert=cacert, insecure=insecure)
    result: dict[str, Any] = {"host": done.host, "ak": done.ak, "ek": done.ek,
                              "ek_chain": "verified by the verifier", "moved_from_ek": None,
                              "verifier": url}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"enrolled AK {visible(done.ak[:16])}… as host {visible(done.host)} with "
                   f"{visible(url)} (credential activated; EK chain verified by the verifier)")


def _enrollment_ek(certificate: bytes | None, public: bytes,
                   roots: list[bytes]) -> tuple[Public, str]:
    """The EK to wrap the credential to, and its id.

    With a certificate, the EK is the certificate's key in the TCG template (what the
    TPM derives), never the host's separate EK public: a TPM that shows another TPM's
    certificate then cannot activate. With roots, the certificate must be an EK
    certificate chaining to them; no certificate is no enrollment.
    """
    from datetime import UTC, datetime

    from attest.evidence.ekcert import ek_id, parse_ek_certificate, verify_ek_certificate
    from attest.evidence.ektemplate import ek_public
    from attest.evidence.signatures import public_key
    from attest.evidence.structures import parse_public_tpm2b

    if certificate is None:
        if roots:
            raise EvidenceError("the EK has no certificate to check against --ek-roots",
                                reason=Reason.EK_CHAIN_INVALID,
                                hint="this TPM cannot prove who made it; do not enroll it")
        # No roots: nothing vouches for the EK; activation proves only that the AK
        # shares a TPM with it.
        parsed = parse_public_tpm2b(public)
        return parsed, ek_id(public_key(parsed, Reason.EK_CHAIN_INVALID))
    if roots:
        key = verify_ek_certificate(certificate, roots, at=datetime.now(UTC)).leaf.public_key
    else:
        key = parse_ek_certificate(certificate).public_key
    return ek_public(key), ek_id(key)


def _append(log: AuditLog, tx: Transaction, entry: Entry) -> None:
    log.append(tx, entry)


def named_ak(identity: Any) -> None:
    """IdentityError unless the home's AK public area has the AK's name; key_attributes_
    invalid unless it is a restricted signing key (identity.json is the host user's)."""
    from attest.errors import IdentityError
    from attest.evidence.ak import check_ak
    from attest.evidence.structures import parse_public_tpm2b

    public = parse_public_tpm2b(identity.ak_public)
    if public.name != identity.ak_name:
        raise IdentityError("the AK public area in the host identity does not have the AK's "
                            "name: it was edited", hint="run `attest provision` again")
    check_ak(public)
