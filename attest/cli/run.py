"""`attest run -- CMD ARGS...`: no acceptance, no execution."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from attest.cli.common import tpm_from
from attest.cli.terminal import visible
from attest.ear.keys import trusted
from attest.errors import UsageError
from attest.host.http import check_verifier_url
from attest.host.run import Remote, default_subject, run_local, run_remote
from attest.tpm import keys as signing

if TYPE_CHECKING:
    from attest.audit.note import VerifierKey


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False})
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify in-process against this policy and the local store.")
@click.option("--verifier", "verifier_url", metavar="URL",
              help="Have a verifier service verify: an https URL, or http to this machine "
              "(exit 3 when it is unreachable).")
@click.option("--verifier-key", "verifier_keys", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="With --verifier: a PEM public key whose signed results are trusted "
              "(`attest result key` on the verifier); repeatable [default: "
              "$ATTEST_HOME/verifier-keys/*.pem].")
@click.option("--log-key", "log_key", metavar="PUBKEY",
              help="With --verifier: the audit log's verifier key (`attest audit key`, or a "
              "file holding it); the result's audit receipt must then verify with it.")
@click.option("--cacert", type=click.Path(dir_okay=False, path_type=Path),
              help="With an https --verifier: the CA certificate(s) of its server (PEM) "
              "[default: the system's].")
@click.option("--insecure", is_flag=True,
              help="Allow plain http to a verifier on another machine (its results are "
              "still checked; the artifact travels in clear).")
@click.option("--store", "store_url", metavar="URL", help="The local store (with --policy).")
@click.option("--subject", help="Who asks [default: the user name].")
@click.option("--key", "key_name", default=signing.DEFAULT_KEY, show_default=True,
              help="The PCR-bound signing key.")
@click.option("--keep-env", "keep_env", multiple=True, metavar="NAME",
              help="Keep this code-injecting variable (LD_PRELOAD, BASH_ENV, PYTHONPATH, ...; "
              "removed by default). The artifact names it with its value's SHA-256, and the "
              "policy must allow it (keep_env). Repeatable.")
@click.option("--quiet", "-q", is_flag=True, help="Say nothing on acceptance.")
@click.option("--supervise", is_flag=True,
              help="Keep CMD only while its authorization holds: on its revocation, or "
              "the host turning untrusted or stale, the agent sends CMD SIGTERM, then "
              "SIGKILL after the grace (`attest docs continuous`). Needs `attest agent`: without "
              "one it is refused (exit 2), never run unsupervised.")
@click.option("--grace", metavar="DURATION",
              help="With --supervise: the time between SIGTERM and SIGKILL, at most 10m "
              "[default: 5s].")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, policy_path: Path | None, verifier_url: str | None,
        verifier_keys: tuple[Path, ...], log_key: str | None, cacert: Path | None,
        insecure: bool,
        store_url: str | None, subject: str | None, key_name: str, keep_env: tuple[str, ...],
        quiet: bool, supervise: bool, grace: str | None, argv: tuple[str, ...]) -> None:
    """Run CMD only if a verifier accepts an artifact for exactly this command line.

    \b
    It copies CMD's executable into a sealed memory file, measures that copy and
    the argv into the runtime PCR, issues an artifact, has it verified, and on
    acceptance replaces itself with that very copy (same pid, CMD's exit code),
    in the environment without code-injecting variables (LD_*, BASH_ENV, ...)
    unless --keep-env names them. Denied: the reasons, exit 1. Verifier
    unreachable: exit 3. CMD never starts unless accepted. With --verifier,
    accepted means an affirming attestation result signed by a trusted verifier
    key, about this very artifact and nonce, unexpired, with an audit receipt.
      attest run --policy policy.yaml -- /usr/bin/backup --full /srv
      attest run --supervise --grace 10s -- /usr/bin/backup --full /srv
    """
    if supervise:
        # Here only when no agent answered (attest.cli.thin takes the supervised runs):
        # nobody would watch CMD, so it does not run at all.
        raise UsageError("--supervise needs `attest agent`: no agent answers, and CMD never "
                         "runs unsupervised",
                         hint="start `attest agent --verifier URL`, then `attest run "
                         "--supervise -- CMD` without --policy or --verifier")
    if grace is not None:
        raise UsageError("--grace goes with --supervise")
    if (policy_path is None) == (verifier_url is None):
        raise UsageError("give exactly one of --policy and --verifier",
                         hint="or start `attest agent --verifier URL` (no agent answers on "
                         "$ATTEST_HOME/agent.sock)")
    remote = None
    if verifier_url is not None:
        # Before anything is measured: the URL, and the keys its results must be signed by.
        check_verifier_url(verifier_url, insecure=insecure)
        remote = Remote(verifier_url, trusted(ctx.obj.home, verifier_keys), cacert=cacert,
                        insecure=insecure, log_key=None if log_key is None else
                        _log_key(log_key))
    elif verifier_keys or log_key or cacert or insecure:
        raise UsageError("--verifier-key, --log-key, --cacert and --insecure go with "
                         "--verifier")
    command = list(argv)
    who = subject or default_subject()
    if policy_path is not None:
        # Only an in-process verification needs the policy loader and the store
        # (SQLAlchemy): `--verifier URL` never imports them.
        from attest.cli.verifier import open_store
        from attest.policy import load_policy

        policy = load_policy(policy_path)
        with tpm_from(ctx) as tpm, open_store(ctx, store_url) as store:
            done = run_local(tpm, ctx.obj.home, command, policy, store, subject=who,
                             key_name=key_name, keep_env=keep_env)
    else:
        assert remote is not None  # noqa: S101 - narrowed by the check above
        with tpm_from(ctx) as tpm:
            done = run_remote(tpm, ctx.obj.home, command, remote, subject=who,
                              key_name=key_name, keep_env=keep_env)
    decision = done.decision
    if not decision.accepted:
        click.echo(f"attest: denied, {visible(repr(' '.join(command)))} not run: "
                   f"{', '.join(decision.reasons)}", err=True)
        for denial in decision.denials:
            click.echo(f"  {denial.reason.value}: {visible(denial.message)}", err=True)
        raise SystemExit(1)
    if not quiet:
        click.echo(f"attest: accepted ({visible(decision.jti)}); running "
                   f"{visible(' '.join(command))}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec the sealed bytes that were measured, not whatever the path holds now.
    done.exec(command)


def _log_key(text: str) -> VerifierKey:
    from attest.cli.audit import _key

    return _key(text)
