"""`attest quote`: `create` makes a quote with the AK, in files tpm2_checkquote reads;
`verify` checks one without a TPM.

`quote verify` takes tpm2_checkquote's flags and files, so a script that calls
tpm2_checkquote can call attest instead.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from attest.cli.common import (
    MAX_NONCE_BYTES,
    echo_json,
    parse_hex,
    parse_selection,
    read_input,
    refuse_evidence,
    tpm_from,
)
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import (
    EvidenceError,
    MalformedEvidence,
    MalformedInput,
    UsageError,
)
from attest.evidence.pcrs import PCRSelection, hash_name
from attest.evidence.quote import QuoteFacts, verify_quote
from attest.evidence.signatures import PublicKey
from attest.evidence.structures import Public
from attest.evidence.tpm2tools import (
    read_attest,
    read_pcrs,
    read_public,
    read_signature,
    write_serialized_pcrs,
)
from attest.inputfile import MAX_KEY_BYTES, read_home_file
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


@click.group()
def quote() -> None:
    """Make TPM quotes of PCR state, and verify them."""


@quote.command()
@click.option("--pcrs", required=True, metavar="BANK:LIST",
              help="PCRs to quote, e.g. sha256:0,1,15 (tpm2-tools syntax).")
@click.option("--nonce", required=True, metavar="HEX",
              help=f"Verifier challenge, hex, at most {MAX_NONCE_BYTES} bytes (qualifyingData).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for quote.msg, quote.sig, quote.pcrs, ak.pub (TPM2B_PUBLIC), "
              "ak.name, ak.pem and quote.json.")
@json_option(help="Print quote.json's object, with \"ok\" and \"out_dir\".")
@click.pass_context
def create(ctx: click.Context, pcrs: str, nonce: str, out_dir: Path, as_json: bool) -> None:
    """Quote PCRs with the AK.

    \b
    The files are the ones tpm2_checkquote reads:
      tpm2_checkquote -u ak.pub -m quote.msg -s quote.sig -f quote.pcrs -g sha256 -q NONCE
    ak.pub is the AK's TPM2B_PUBLIC, whose attributes show a restricted key to a
    verifier that knows the AK's name from enrollment (`attest quote verify --ak-name`;
    ak.name is the host's copy, no proof); ak.pem is the bare key, for tools that need one.
    """
    # Imported here: `quote verify` joins this group and runs without the TSS.
    from attest.tpm.files import write_public
    from attest.tpm.hierarchy import load_identity
    from attest.tpm.quote import create_quote

    selection = parse_selection(pcrs)
    qualifying = parse_hex(nonce, "--nonce", MAX_NONCE_BYTES)
    identity = load_identity(ctx.obj.home)
    with tpm_from(ctx) as tpm:
        made = create_quote(tpm, identity, selection, qualifying)
    ak_pem = read_home_file(ctx.obj.home / "ak.pem", "AK public key", MAX_KEY_BYTES)
    files = {
        "quote.msg": made.message,
        "quote.sig": made.signature,
        "quote.pcrs": write_serialized_pcrs(selection, made.pcr_values),
        "ak.pub": made.ak_public,  # TPM2B_PUBLIC: restriction shows under a known name
        "ak.name": identity.ak_name,  # the name's bytes, as tpm2_createak -n writes them
        "ak.pem": ak_pem,
    }
    values: dict[str, dict[str, str]] = {}
    for bank, index in selection:
        values.setdefault(bank, {})[str(index)] = made.pcr_values[(bank, index)].hex()
    summary = {
        "pcrs": str(selection),
        "nonce": qualifying.hex(),
        "message": base64.b64encode(made.message).decode(),
        "signature": base64.b64encode(made.signature).decode(),
        "ak_public": base64.b64encode(made.ak_public).decode(),
        "ak_name": identity.ak_name.hex(),
        "ak_pem": ak_pem.decode(),
        "pcr_values": values,
    }
    files["quote.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    for name, data in files.items():
        write_public(out_dir / name, data)
    if as_json:
        echo_json({"ok": True, "out_dir": str(out_dir), **summary})
        return
    shown, nonce = visible(out_dir), qualifying.hex()
    click.echo(f"quoted {selection} with nonce {nonce} into {shown}/")
    click.echo(f"check it: tpm2_checkquote -u {shown}/ak.pub -m {shown}/quote.msg "
               f"-s {shown}/quote.sig -f {shown}/quote.pcrs -g sha256 -q {nonce}")
    click.echo(f"or: attest quote verify -u {shown}/ak.pub --ak-name {identity.ak_name.hex()} "
               f"-m {shown}/quote.msg -s {shown}/quote.sig -f {shown}/quote.pcrs "
               f"-g sha256 -q {nonce}")


@quote.command("verify")
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
        refuse_evidence(exc, as_json)
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
