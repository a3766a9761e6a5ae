"""`attest verify-signature`: verify a signature bundle offline, with no TSS."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from attest.cli.common import echo_json
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import UsageError
from attest.inputfile import read_prefix
from attest.streamdigest import stream_digests


@click.command("verify-signature",
               short_help="Verify a signature bundle offline: 0 valid, 1 denied.")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The verifier policy (YAML).")
@json_option(help='Print the decision: {"ok", "accepted", "reasons", "denials", "facts", ...}.')
def verify_signature(bundle: Path, files: tuple[Path, ...], policy_path: Path,
                     as_json: bool) -> None:
    """Verify BUNDLE (from attest sign) and that each FILE is what it signed: exit 0
    accepted, 1 denied with reason codes (`attest docs reasons`).

    Offline and without the TSS: the policy's trusted_aks (enrollment: policy) say
    which hosts may sign, its sealed PCRs and reference values in what state. Checked:
    the DSSE signature (or its batch proof and batch signature), the key's
    certification by the AK, the quote bound to this signature, the logs against the
    reference values, the time, and each FILE against the payload or the statement's
    subjects.

    \b
    Examples:
      attest verify-signature app.tar.bundle app.tar --policy signers.yaml
      attest verify-signature release.bundle dist/*.whl --policy signers.yaml --json
    """
    from attest.cli.verifier import decision_json
    from attest.policy import load_policy
    from attest.policy.model import EnrollmentMode
    from attest.signing.bundle import MAX_BUNDLE_BYTES
    from attest.verify.signature import ShownFile, verify_bundle

    policy = load_policy(policy_path)
    if policy.enrollment is not EnrollmentMode.POLICY:
        # Every bundle would be denied ak_unknown: exit 1 would read as "a bad signature"
        # to a script, when it is the operator's policy that cannot work offline.
        raise UsageError(f"{policy_path} trusts a verifier's store (enrollment: store); "
                         "offline verification trusts the policy's trusted_aks",
                         hint="use a policy with enrollment: policy and the signing hosts' "
                              "AKs under trusted_aks (attest policy init --from-host)")
    # One byte over the limit is enough for the parser to deny it malformed.
    raw = read_prefix(bundle, "bundle", MAX_BUNDLE_BYTES)
    shown = [ShownFile(str(path), _digest(path)) for path in files]
    decision = verify_bundle(raw, policy, int(time.time()), shown)
    if as_json:
        echo_json(decision_json(decision))
    elif decision.accepted:
        facts = decision.facts
        when = datetime.fromtimestamp(facts["time"], UTC).isoformat(timespec="seconds")
        batched = ("" if facts["batch"] is None else
                   f"; batch of {facts['batch']['size']}, index {facts['batch']['index']}")
        click.echo(f"accepted: signed by key {facts['key'][:16]}… of host "
                   f"{visible(decision.host)} at {when} (the host's clock{batched}; "
                   f"{visible(facts['payload_type'])}); {len(shown)} file(s) match")
        for match in facts["matched"] or ():
            # The signer's names for the bytes shown (escaped: the signer chose them).
            for name in match["subjects"]:
                click.echo(f"  {visible(match['file'])}: signed as {visible(name)}")
    if not decision.accepted:
        click.echo(f"denied: {', '.join(decision.reasons)}", err=True)
        for denial in decision.denials:
            click.echo(f"  {denial.reason.value}: {visible(denial.message)}", err=True)
        raise SystemExit(1)


def _digest(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream_digests(stream, ["sha256"], f"hashing {path}")[0]["sha256"]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
