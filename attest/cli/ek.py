"""`attest ek`: endorsement key certificates, checked without a TPM."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography import x509
from OpenSSL import crypto

from attest.certfiles import certificate_files
from attest.cli.common import echo_json, read_input, refuse_evidence
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import EvidenceError, UsageError
from attest.evidence.ekcert import CRYPTOGRAPHY_REFUSALS, verify_ek_certificate
from attest.reasons import Reason


@click.group()
def ek() -> None:
    """Endorsement key certificates."""


@ek.command("verify")
@click.argument("cert", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--roots", "roots", multiple=True, required=True, metavar="PATH",
              type=click.Path(path_type=Path),
              help="Trust anchors: a certificate file (PEM may hold several) or a folder of "
              "them; every certificate given here is trusted. Repeatable.")
@click.option("--chain", "chain", multiple=True, metavar="PATH", type=click.Path(path_type=Path),
              help="Intermediate certificates used to build the path (not trusted). Repeatable.")
@click.option("--at", "at", metavar="ISO-8601",
              help="Check validity at this time (default: now), e.g. 2024-05-01T00:00:00Z.")
@json_option(help="Machine-readable result.")
def ek_verify(cert: Path, roots: tuple[Path, ...], chain: tuple[Path, ...], at: str | None,
              as_json: bool) -> None:
    """Validate an EK certificate's chain to manufacturer roots.

    Reads what real TPMs store: DER with 0xFF padding from NV, PEM, TCG-profile
    certificates with empty subjects, roots that are not strict DER.
    """
    when = _parse_time(at)
    leaf = read_input(cert, "certificate", evidence=Reason.EK_CHAIN_INVALID)
    anchors = [read_input(p, "root") for r in roots for p in certificate_files(r)]
    intermediates = [read_input(p, "intermediate") for c in chain for p in certificate_files(c)]
    try:
        verified = verify_ek_certificate(leaf, anchors, intermediates, at=when)
    except EvidenceError as exc:
        refuse_evidence(exc, as_json)
        return
    ek = verified.leaf
    subjects = [_subject(der) for der in verified.chain[1:]]
    if as_json:
        echo_json({
            "ok": True, "valid": True, "at": when.isoformat(), "trimmed_bytes": ek.trimmed,
            "chain": ["(EK)", *subjects], "not_after": ek.not_after.isoformat(),
            "tpm": None if ek.tpm is None else {"manufacturer": ek.tpm.manufacturer,
                                                "model": ek.tpm.model, "version": ek.tpm.version},
            "ek_eku": ek.ek_eku, "subject_empty": ek.subject_empty,
        })
        return
    click.echo(f"valid: EK certificate chains to a trusted root at {when.isoformat()}")
    for depth, subject in enumerate(subjects, 1):
        click.echo(f"  {'  ' * depth}<- {visible(subject)}")
    if ek.trimmed:
        click.echo(f"  note: {ek.trimmed} padding bytes after the DER were ignored")
    if ek.tpm is not None:
        click.echo(f"  TPM: {visible(ek.tpm.manufacturer)} {visible(ek.tpm.model)} "
                   f"{visible(ek.tpm.version)}")


def _subject(der: bytes) -> str:
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string() or "(empty)"
    except CRYPTOGRAPHY_REFUSALS:
        pass  # Some vendor roots (Nuvoton) are not strict DER: OpenSSL still reads them.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            name = crypto.load_certificate(crypto.FILETYPE_ASN1, der).get_subject()
            parts = [f"{k.decode(errors='replace')}={v.decode(errors='replace')}"
                     for k, v in name.get_components()]
    except crypto.Error:
        # Display only: the chain was verified already; a name neither library reads is
        # not a reason to fail the command.
        return "(unreadable subject)"
    return ",".join(parts) or "(empty)"


def _parse_time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at is not an ISO-8601 time: {value!r}",
                         hint="write e.g. 2024-05-01T00:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
