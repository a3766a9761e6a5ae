"""`attest quote verify`, `attest ek verify`, `attest policy pcr`: evidence checks without a TPM.

`quote verify` takes tpm2_checkquote's flags and files, so a script that calls
tpm2_checkquote can call attest instead.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from cryptography import x509
from OpenSSL import crypto

from attest.certfiles import certificate_files
from attest.cli.common import echo_json, parse_hex, read_input
from attest.cli.failure import Failure, json_option
from attest.cli.terminal import visible
from attest.errors import (
    EXIT_REFUSED,
    EvidenceError,
    MalformedEvidence,
    MalformedInput,
    UsageError,
)
from attest.evidence import tpmpolicy as policy_digests
from attest.evidence.ekcert import verify_ek_certificate
from attest.evidence.pcrs import DIGEST_SIZES, PCRSelection, hash_name
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.signatures import PublicKey
from attest.evidence.structures import Public
from attest.evidence.tpm2tools import read_attest, read_pcrs, read_public, read_signature
from attest.reasons import Reason

_T = TypeVar("_T")
# A TPM2B_DATA holds at most a digest; anything far larger is not a qualification.
MAX_QUALIFICATION_BYTES = 1024


def _qualification(value: str | None) -> bytes:
    """-q takes hex or a file holding the bytes, as tpm2_checkquote does."""
    if value is None:
        return b""
    path = Path(value)
    if path.is_file():
        return read_input(path, "-q/--qualification", MAX_QUALIFICATION_BYTES)
    return parse_hex(value, "-q/--qualification")


def _untrusted_key(pem: bool) -> EvidenceError:
    # Only a restricted key proves that the TPM made what it signed (it refuses to sign
    # outside digests that begin with TPM_GENERATED_VALUE). A PEM carries no attributes,
    # and a public area's attributes are whatever its sender wrote: set RESTRICTED in a
    # signing key's TPM2B_PUBLIC and the key material, all a signature depends on, is the
    # same. Only the name (a hash over the attributes too) known from elsewhere binds them.
    what = ("-u is a bare PEM key, which cannot show that it is a restricted TPM signing key"
            if pem else "-u is a public area whose attributes nothing vouches for (no "
            "--ak-name): its sender could have set RESTRICTED on any key")
    return EvidenceError(
        f"{what}: any non-restricted key (attest key sign, tpm2_sign) could have signed a "
        "TPMS_ATTEST made in software", reason=Reason.KEY_ATTRIBUTES_INVALID,
        hint="give the AK as TPM2B_PUBLIC (attest's ak.pub, tpm2_createak -u, "
        "tpm2_readpublic -o) with --ak-name, the AK's name as you know it from enrollment "
        "or credential activation (attest provision prints it; tpm2_createak -n writes "
        "it); or pass --trust-key-file if you know the file is the AK's")


def _ak_name(value: str) -> bytes:
    """--ak-name takes hex or a file holding the name's bytes (tpm2_createak -n)."""
    path = Path(value)
    if path.is_file():
        return read_input(path, "AK name")
    return parse_hex(value, "--ak-name")


def _check_key(public: Public | PublicKey, ak_name: str | None, trusted: bool) -> None:
    """Raise key_attributes_invalid unless something vouches for -u's attributes: its name
    is --ak-name, or --trust-key-file takes the file on faith."""
    if ak_name is not None:
        if not isinstance(public, Public):
            raise UsageError("--ak-name needs -u as TPM2B_PUBLIC or TPMT_PUBLIC: a PEM key has "
                             "no TPM name to compare")
        expected = _ak_name(ak_name)
        if not hmac.compare_digest(public.name, expected):
            raise EvidenceError(
                f"-u's name is {public.name.hex()}, not --ak-name {expected.hex()}: the file is "
                "not the AK's public area (or its attributes were edited)",
                reason=Reason.KEY_ATTRIBUTES_INVALID)
        return
    if not trusted:
        raise _untrusted_key(not isinstance(public, Public))


def _refusal(exc: EvidenceError, as_json: bool) -> None:
    reason = exc.reason.value if exc.reason else "invalid"
    if as_json:
        # "valid"/"reason"/"message" as before; "ok"/"error" as every command's failure.
        echo_json({"valid": False, "reason": reason, "message": exc.message,
                   **Failure.of_error(exc).to_json()})
    # The person's text on stderr, --json or not, as every failing command's.
    click.echo(f"invalid: {reason}: {visible(exc.message)}", err=True)
    if exc.hint:
        click.echo(f"hint: {visible(exc.hint)}", err=True)
    raise SystemExit(EXIT_REFUSED)


@click.command("verify")
@click.option("-u", "--public", "public_path", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The AK public key: TPM2B_PUBLIC (tpm2-tools' tss form, attest's ak.pub) "
              "or TPMT_PUBLIC, whose attributes show a restricted signing key when its name "
              "is --ak-name; a bare PEM only with --trust-key-file.")
@click.option("-m", "--message", "message_path", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The quote: TPMS_ATTEST as tpm2_quote -m writes it.")
@click.option("-s", "--signature", "signature_path", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The signature: TPMT_SIGNATURE as tpm2_quote -s writes it.")
@click.option("-f", "--pcr", "pcr_path", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="PCR values: tpm2_quote -o's file (with its selection), or bare values "
              "(tpm2_pcrread -o) read with -l. Without -f no PCR value is checked.")
@click.option("-l", "--pcr-list", metavar="BANK:LIST",
              help="The selection of a bare-values -f file, e.g. sha256:0,1,2.")
@click.option("-F", "--format", "_ignored_format", metavar="FORMAT", hidden=False,
              help="Accepted and ignored, as tpm2-tools 5 does (the file form is detected).")
@click.option("-g", "--hash-algorithm", metavar="ALG",
              help="The signature's hash; refused when the quote was signed with another.")
@click.option("-q", "--qualification", metavar="HEX|FILE",
              help="The nonce the quote must carry (extraData), hex or a file.")
@click.option("--allow-sha1", is_flag=True, help="Accept SHA-1 signatures (refused by default).")
@click.option("--ak-name", metavar="HEX|FILE",
              help="The AK's TPM name as known from enrollment or credential activation "
              "(hex, or a file as tpm2_createak -n writes it): -u must have this name, which "
              "binds its attributes.")
@click.option("--trust-key-file", "--trust-unrestricted-pem", "trust_key_file", is_flag=True,
              help="Take -u as the AK without --ak-name, although nothing shows it is a "
              "restricted TPM key (a PEM has no attributes; a public area's are its "
              "sender's word): a TPMS_ATTEST made in software and signed by any key with "
              "that public part would pass.")
@json_option(help="Machine-readable result.")
def quote_verify(public_path: Path, message_path: Path, signature_path: Path,
                 pcr_path: Path | None, pcr_list: str | None, _ignored_format: str | None,
                 hash_algorithm: str | None, qualification: str | None, allow_sha1: bool,
                 ak_name: str | None, trust_key_file: bool, as_json: bool) -> None:
    """Verify a quote as tpm2_checkquote does, and more: every check names its reason.

    \b
    Exit 0: valid. Exit 1: invalid, with the reason code and a sentence (bytes
    that are no quote, signature, key or PCR file are quote_malformed).
    Exit 2: usage (a file that cannot be opened, a bad flag).
    \b
      attest quote verify -u ak.pub --ak-name NAME -m quote.msg -s quote.sig \\
          -f quote.pcrs -g sha256 -q NONCE
    """
    public_bytes = read_input(public_path, "public key", evidence=Reason.QUOTE_MALFORMED)
    message = read_input(message_path, "quote", evidence=Reason.QUOTE_MALFORMED)
    signature = read_input(signature_path, "signature", evidence=Reason.QUOTE_MALFORMED)
    pcr_bytes = (None if pcr_path is None else
                 read_input(pcr_path, "PCR file", evidence=Reason.QUOTE_MALFORMED))
    nonce = _qualification(qualification)
    selection_hint = PCRSelection.parse(pcr_list) if pcr_list else None
    if pcr_bytes is None and selection_hint is not None:
        raise UsageError("-l/--pcr-list describes a bare-values -f file; give -f too")
    try:
        # Bytes that are no key, TPMS_ATTEST, TPMT_SIGNATURE or PCR file are evidence
        # that does not parse: refused (exit 1, quote_malformed), not bad usage.
        public = _parsed("-u: not a public key", lambda: read_public(public_bytes))
        _parsed("-m: not a TPMS_ATTEST", lambda: read_attest(message))
        _parsed("-s: not a TPMT_SIGNATURE", lambda: read_signature(signature))
        values = None
        if pcr_bytes is not None:
            _, values = _parsed("-f: not a PCR file",
                                lambda: read_pcrs(pcr_bytes, selection_hint))
        _check_key(public, ak_name, trust_key_file)
        facts = verify_quote(message, signature, public, expected_extra_data=nonce,
                             pcr_values=values, required_pcrs=None, allow_sha1=allow_sha1)
        if hash_algorithm is not None and hash_name(hash_algorithm) != facts.signature_hash:
            raise EvidenceError(
                f"the quote is signed with {facts.signature_hash}, not {hash_name(hash_algorithm)}",
                reason=Reason.ALG_NOT_ALLOWED)
    except EvidenceError as exc:
        _refusal(exc, as_json)
        return
    _print_quote(facts, values is not None, as_json)


def _parsed(what: str, parse: Callable[[], _T]) -> _T:
    try:
        return parse()
    except (MalformedEvidence, MalformedInput) as exc:
        raise MalformedEvidence(f"{what}: {exc.message}", reason=Reason.QUOTE_MALFORMED) from None


def _print_quote(facts: QuoteFacts, checked_values: bool, as_json: bool) -> None:
    pcrs = {bank: {str(i): v.hex() for i, v in sorted(vals.items())}
            for bank, vals in facts.pcrs.items()}
    if as_json:
        echo_json({
            "ok": True,
            "valid": True,
            "selection": str(facts.selection),
            "pcr_digest": facts.pcr_digest.hex(),
            "pcrs": pcrs,
            "pcr_values_checked": checked_values,
            "extra_data": facts.extra_data.hex(),
            "signer": facts.signer.hex(),
            "signature": f"{facts.signature_scheme}-{facts.signature_hash}",
            "clock": {"clock": facts.clock_info.clock, "reset_count": facts.clock_info.reset_count,
                      "restart_count": facts.clock_info.restart_count,
                      "safe": facts.clock_info.safe},
            "firmware_version": facts.firmware_version,
        })
        return
    click.echo(f"valid: quote of {facts.selection} signed with "
               f"{facts.signature_scheme}-{facts.signature_hash}")
    if checked_values:
        for bank, values in pcrs.items():
            click.echo(f"  {bank}:")
            for index, value in values.items():
                click.echo(f"    {index:>2} : 0x{value.upper()}")
    else:
        click.echo(f"  pcr digest {facts.pcr_digest.hex()} (no -f: PCR values not checked)")
    click.echo(f"  extraData {facts.extra_data.hex() or '(empty)'}; clock "
               f"{facts.clock_info.clock} ms, safe={facts.clock_info.safe}")


@click.command("verify")
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
        _refusal(exc, as_json)
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
    except ValueError:
        # Some vendor roots (Nuvoton) are not strict DER: OpenSSL still reads them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            name = crypto.load_certificate(crypto.FILETYPE_ASN1, der).get_subject()
            parts = [f"{k.decode()}={v.decode(errors='replace')}"
                     for k, v in name.get_components()]
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


@click.command("pcr")
@click.option("--bank", default="sha256", show_default=True, help="The PCR bank.")
@click.option("--pcr", "pcr_values", multiple=True, required=True, metavar="INDEX=HEX",
              help="A PCR and the value the policy demands, e.g. 16=<hex>. Repeatable.")
@click.option("--auth-value", is_flag=True, help="Append PolicyAuthValue (as attest's keys do).")
@click.option("--session-hash", type=click.Choice(["sha256", "sha384"]), default="sha256",
              show_default=True, help="The policy session's hash algorithm.")
@json_option(help="Machine-readable output.")
def policy_pcr(bank: str, pcr_values: tuple[str, ...], auth_value: bool, session_hash: str,
               as_json: bool) -> None:
    """Print the PolicyPCR digest (what a trial session would compute), in hex."""
    name = hash_name(bank)
    values: dict[tuple[str, int], bytes] = {}
    for spec in pcr_values:
        index_text, sep, hex_value = spec.partition("=")
        if not sep:
            raise UsageError(f"--pcr {spec!r}: write INDEX=HEX, e.g. 16=<hex>")
        selection = PCRSelection.parse(f"{name}:{index_text}")
        if len(selection) != 1:
            raise UsageError(f"--pcr {spec!r}: one PCR per value")
        value = parse_hex(hex_value, f"value of PCR {index_text}")
        if len(value) != DIGEST_SIZES[name]:
            raise UsageError(f"PCR {index_text}: a {name} value is {DIGEST_SIZES[name]} bytes")
        values[next(iter(selection))] = value
    selection = PCRSelection.of({name: [i for _, i in values]})
    digest = policy_digests.policy_pcr(policy_digests.initial(session_hash), selection, values,
                                       session_hash)
    if auth_value:
        digest = policy_digests.policy_auth_value(digest, session_hash)
    if as_json:
        echo_json({"policy_digest": digest.hex(), "session_hash": session_hash,
                   "pcrs": str(selection), "auth_value": auth_value})
    else:
        click.echo(digest.hex())

