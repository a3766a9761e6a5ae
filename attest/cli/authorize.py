"""`attest authorize`: turn a request to execute into a signed authorization artifact."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click

from attest.artifact.model import RuntimeLogBase, unb64url
from attest.cli.common import echo_json, parse_duration, read_input, tpm_from
from attest.cli.failure import json_option
from attest.cli.key import read_approvals
from attest.cli.terminal import visible
from attest.errors import EvidenceError, UsageError
from attest.host.issue import DEFAULT_TTL_S, Request, issue
from attest.tpm import keys as signing
from attest.tpm.files import write_public


def _log_base(text: str) -> RuntimeLogBase:
    count, sep, digest = text.partition(":")
    try:
        if not sep or not count.isdigit():
            raise ValueError
        return RuntimeLogBase.from_json({"count": int(count), "digest": digest})
    except (ValueError, EvidenceError):
        raise UsageError(f"--log-base {text!r}: write COUNT:DIGEST, the runtime_log fact of "
                         "the verifier's last acceptance (a count of records and 64 hex "
                         "digits)") from None


def _gov(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--gov {pair!r}: write KEY=VALUE, e.g. ticket=CHG-1234")
        out[key] = value
    return out


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--subject", required=True, help="Who asks (a person, a service, a pipeline).")
@click.option("--action", default="exec", show_default=True, help="What is to be done.")
@click.option("--argv", "argv_options", multiple=True, metavar="ARG",
              help="One argument of the command (repeatable), or give them after `--`.")
@click.argument("argv_rest", nargs=-1, type=click.UNPROCESSED)
@click.option("--key", "key_name", default=signing.DEFAULT_KEY, show_default=True,
              help="The PCR-bound signing key.")
@click.option("--approval", "approvals", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An authority's approval, for keys created with --authority; repeatable: "
              "the newest unexpired one for the current PCR values is used.")
@click.option("--resource", "resources", multiple=True, help="A resource the action touches.")
@click.option("--nonce", metavar="B64URL", help="The verifier's challenge (`attest challenge`).")
@click.option("--verifier", "verifier_url", metavar="URL",
              help="Fetch the nonce from this verifier service (POST /v1/challenges): "
              "https, or http to this machine.")
@click.option("--cacert", type=click.Path(dir_okay=False, path_type=Path),
              help="With an https --verifier: the CA certificate(s) of its server (PEM).")
@click.option("--insecure", is_flag=True,
              help="Allow plain http to a verifier on another machine.")
@click.option("--ttl", default=f"{DEFAULT_TTL_S}s", show_default=True, metavar="DURATION",
              help="Lifetime of the artifact, e.g. 60s, 5m, 1h30m: 1s to 7d.")
@click.option("--aud", help="The verifier the artifact is meant for.")
@click.option("--parent", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The artifact this one derives from (its scope must lie within it).")
@click.option("--gov", "gov", multiple=True, metavar="KEY=VALUE",
              help="Governance metadata: requester, ticket, approver (repeatable).")
@click.option("--boot-log", is_flag=True,
              help="Include the firmware's boot log: required by, and only accepted under, "
              "a policy with reference.boot. With --policy, the policy decides.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The verifier policy it is issued under: its id and digest go into the "
              "artifact's policy claim (a verifier under another id denies it).")
@click.option("--log-base", metavar="COUNT:DIGEST",
              help="Send the runtime log from this prefix, which the verifier holds: the "
              "runtime_log fact of its last acceptance (`attest verify --json`). Without "
              "it, or when the log no longer begins so, the whole log is sent.")
@click.option("--out", "out_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the artifact.")
@json_option(help='Print {"ok", "out", "bytes", "ttl", "subject", "action", "argv", '
             '"nonce"}.')
@click.pass_context
def authorize(ctx: click.Context, subject: str, action: str, argv_options: tuple[str, ...],
              argv_rest: tuple[str, ...], key_name: str, approvals: tuple[Path, ...],
              resources: tuple[str, ...], nonce: str | None, verifier_url: str | None,
              cacert: Path | None, insecure: bool, ttl: str, aud: str | None,
              parent: Path | None, gov: tuple[str, ...], boot_log: bool,
              policy_path: Path | None, log_base: str | None, out_file: Path,
              as_json: bool) -> None:
    """Issue an authorization artifact: a quote bound to this request, the key's
    certification, the runtime log, signed inside the TPM by the PCR-bound key.

    \b
      attest authorize --subject deploy-bot --out a.jws -- /usr/bin/backup --full /srv
    """
    argv = argv_options + argv_rest
    seconds = parse_duration(ttl, "--ttl")  # before a verifier is asked for a nonce
    if argv_options and argv_rest:
        raise UsageError("give the argv either with --argv or after `--`, not both")
    if verifier_url is not None:
        if nonce is not None:
            raise UsageError("give --nonce or --verifier (which fetches one), not both")
        from attest.host.http import check_verifier_url
        from attest.host.run import Remote

        check_verifier_url(verifier_url, insecure=insecure)
        # Retried like every challenge; no key is needed to ask for a nonce.
        nonce = Remote(verifier_url, (), cacert=cacert, insecure=insecure).challenge()
    elif cacert is not None or insecure:
        raise UsageError("--cacert and --insecure go with --verifier")
    if nonce is not None:
        try:
            unb64url(nonce, "--nonce")
        except EvidenceError as exc:
            raise UsageError(exc.message) from None
    request = Request(
        subject=subject, action=action, argv=tuple(argv), resources=resources,
        key_name=signing.check_name(key_name), nonce=nonce, ttl=seconds,
        audience=aud, parent=read_input(parent, "parent artifact") if parent else None,
        gov=_gov(gov), include_boot_log=boot_log,
        approvals=read_approvals(approvals),
        log_base=None if log_base is None else _log_base(log_base),
    )
    if policy_path is not None:
        from attest.policy import load_policy

        policy = load_policy(policy_path)
        if boot_log and not policy.wants_boot_log:
            raise UsageError("--boot-log: the policy appraises no boot state (no "
                             "reference.boot), so its verifiers deny an artifact carrying a "
                             "boot log", hint="drop --boot-log")
        # Each PCR is explained by the log the policy appraises for it: send the boot
        # log exactly when the policy appraises boot PCRs.
        request = dataclasses.replace(request, policy_id=policy.id, policy_digest=policy.digest,
                                      include_boot_log=policy.wants_boot_log)
    with tpm_from(ctx) as tpm:
        artifact = issue(tpm, ctx.obj.home, request, int(time.time()))
    write_public(out_file, artifact + b"\n")
    if as_json:
        echo_json({"ok": True, "out": str(out_file), "bytes": len(artifact), "ttl": request.ttl,
                   "subject": subject, "action": action, "argv": list(argv),
                   "nonce": nonce})
        return
    click.echo(f"authorized {visible(action)} {visible(repr(' '.join(argv)))} for "
               f"{visible(subject)} into {visible(out_file)} "
               f"({len(artifact)} bytes, valid {request.ttl} s)")
