"""`attest policy`: an authority's approvals for keys, PolicyPCR digests, and a verifier
policy written from a host.

`policy pcr` runs on the verifier side (no TSS); `approve` and `init --from-host` read
the host's TPM and import the TPM modules inside their bodies only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from attest import timetext
from attest.cli.common import echo_json, parse_hex, parse_selection, read_input, tpm_from
from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.durations import MAX_DURATION_S
from attest.errors import UsageError
from attest.evidence import tpmpolicy as policy_digests
from attest.evidence.approval import MAX_SERIAL
from attest.evidence.pcrs import DIGEST_SIZES, PCRSelection, hash_name
from attest.inputfile import MAX_KEY_BYTES

# An approval's --expires: the longest duration attest takes (ten years), far beyond any
# PCR values' life.
MAX_APPROVAL_LIFETIME_S = MAX_DURATION_S


@click.group(short_help="Key approvals, PolicyPCR digests, verifier policies.")
def policy() -> None:
    """Policies: an authority's approvals for keys (approve), PolicyPCR digests (pcr),
    and a verifier policy written from a host (init)."""


@policy.command()
@click.option("--authority-key", required=True, type=click.Path(dir_okay=False, exists=True,
              path_type=Path), help="The authority's private key (PEM, unencrypted).")
@click.option("--pcrs", "pcr_specs", required=True, multiple=True, metavar="BANK:I[=HEX]",
              help="PCRs to approve, e.g. sha256:0,1,2 (values read from the TPM) or "
              "sha256:7=<hex> (value given; no TPM needed when every value is given).")
@click.option("--policy-ref", default="", metavar="HEX", help="policyRef, hex (default empty).")
@click.option("--serial", required=True, type=click.IntRange(0, MAX_SERIAL),
              help="This approval's place in the authority's order: higher than every earlier "
              "approval's, so that verifiers can retire older ones (min_approval_serial).")
@click.option("--expires", metavar="DURATION",
              help="Verifiers deny the approval this long after now, e.g. 90d (default: never).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the approval (JSON).")
@json_option(help='Print {"ok", "id", "serial", "pcrs", "approved_policy", "expires", "out"}.')
@click.pass_context
def approve(ctx: click.Context, authority_key: Path, pcr_specs: tuple[str, ...], policy_ref: str,
            serial: int, expires: str | None, out_file: Path, as_json: bool) -> None:
    """Approve PCR values for keys created with --authority (PolicyAuthorize)."""
    # Imported here: the policy group's other commands run without the TSS.
    from attest.tpm import keys as signing
    from attest.tpm.files import write_public
    from attest.tpm.pcr import read_pcrs

    not_after = None
    if expires is not None:
        from attest.cli.common import parse_duration

        not_after = int(time.time()) + parse_duration(expires, "--expires",
                                                      MAX_APPROVAL_LIFETIME_S)
    given: dict[tuple[str, int], bytes] = {}
    lists: list[str] = []
    for spec in pcr_specs:
        if "=" in spec:
            where, _, value = spec.partition("=")
            sel = parse_selection(where)
            if len(sel) != 1:
                raise UsageError(f"{spec!r}: give one PCR per value, e.g. sha256:7=<hex>")
            (bank, index), = list(sel)
            digest = parse_hex(value, f"value of {where}")
            if len(digest) != DIGEST_SIZES[bank]:
                raise UsageError(f"{where}: a {bank} value is {DIGEST_SIZES[bank]} bytes")
            given[(bank, index)] = digest
            lists.append(where)
        else:
            lists.append(spec)
    selection = parse_selection("+".join(lists))
    values = dict(given)
    missing = [k for k in selection if k not in values]
    if missing:
        from attest.evidence.pcrs import PCRSelection

        with tpm_from(ctx) as tpm:
            current = read_pcrs(tpm, PCRSelection.from_pairs(missing))
        values.update(current)
    made = signing.approve(read_input(authority_key, "authority key", MAX_KEY_BYTES),
                           selection, values,
                           parse_hex(policy_ref, "--policy-ref", 64), serial=serial,
                           not_after=not_after)
    write_public(out_file, made.to_json().encode())
    if as_json:
        echo_json({"ok": True, "id": made.id, "serial": serial, "pcrs": str(selection),
                   "approved_policy": made.approved_policy.hex(), "expires": not_after,
                   "out": str(out_file)})
        return
    click.echo(f"approved {selection} (policy {made.approved_policy.hex()}) into "
               f"{visible(out_file)}")
    click.echo(f"approval id {made.id} (serial {serial}"
               + (f", expires {timetext.iso(not_after)})" if not_after is not None else ")"))


@policy.command("pcr")
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


@policy.command("init")
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
@json_option(help='Print {"ok", "out", "ak" (null with --enrollment store), "enrollment", '
             '"key", "pcrs", "reference_values", "executables"}.')
@click.pass_context
def policy_init(ctx: click.Context, from_host: bool, out_file: Path, policy_id: str,
                key_name: str, ek_roots: tuple[str, ...], enrollment: str, force: bool,
                as_json: bool) -> None:
    """Write a verifier policy that trusts this host as it is now.

    Its EK roots, its AK, its key's sealed PCR values, its runtime measurements so far
    as reference values, the commands it measured as the executables exec artifacts
    may name, single-use artifacts; comments explain every field.
    """
    from attest.eventlog.cel import ATTEST_CONTENT_TYPE, SYSTEMD_CONTENT_TYPE
    from attest.evidence.pcrs import RESETTABLE_PCRS
    from attest.host.runtime.log import RuntimeLog, log_pcr, runtime_pcr
    from attest.host.runtime.subjects import measured_executables
    from attest.host.runtime.systemd_log import SystemdLog, systemd_log_path
    from attest.policy import NonceMode, TrustedAK, render_policy
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
                         hint="write key_policy by hand (`attest docs policy`)")
    banks = {bank for bank, _ in key.selection.banks}
    if len(banks) != 1:
        raise UsageError("the key is sealed to PCRs of several banks; policy init handles one")
    bank = banks.pop()
    runtime = RuntimeLog(ctx.obj.home)
    records = runtime.read().records
    reference: dict[str, list[bytes]] = {}
    # systemd's records (copied from its log: docs/measurement.md) by the digest extended.
    systemd = [record.digests[bank] for record in records
               if record.content_type == SYSTEMD_CONTENT_TYPE and bank in record.digests]
    for record in records:
        if record.content_type != ATTEST_CONTENT_TYPE:
            continue
        name, measured = record.content.get("name"), record.content.get("digest")
        if isinstance(name, str) and isinstance(measured, dict) and bank in measured:
            reference.setdefault(name, []).append(bytes.fromhex(measured[bank]))
    executables = measured_executables(records)
    runtime_index = log_pcr(records) or runtime_pcr(allow_resettable=True)
    if runtime_index in RESETTABLE_PCRS:
        raise UsageError(f"the host measures into PCR {runtime_index}, which software can "
                         "reset: a verifier policy does not accept it as the runtime PCR",
                         hint="measure into a PCR that cannot be reset (the default, 15)")
    shared_log = systemd_log_path()
    if shared_log is not None:
        # What systemd logged and attest has not copied yet (the next measurement will).
        systemd += [record.digests[bank] for record in SystemdLog(shared_log).read()
                    if record.pcr == runtime_index and record.extends
                    and record.content_type == SYSTEMD_CONTENT_TYPE and bank in record.digests]
    trusted = ([TrustedAK(host=os.uname().nodename, ak_public=_held_ak(ctx, identity),
                          ak_qualified_name=identity.ak_qualified_name or None)]
               if enrollment == "policy" else [])
    text = render_policy(
        policy_id=policy_id,
        sealed_values={i: v for (b, i), v in key.sealed_values.items() if b == bank},
        bank=bank, runtime_pcr=runtime_index,
        ek_roots=list(ek_roots), trusted_aks=trusted, runtime_reference=reference,
        systemd_reference=systemd or None,
        executables=executables, nonce=NonceMode.OPTIONAL, single_use=True,
        header=f"Written by `attest policy init --from-host` on {os.uname().nodename}.")
    write_public(out_file, text.encode())
    if as_json:
        # "ak": the AK the policy lists; none with enrollment: store (the store decides).
        echo_json({"ok": True, "out": str(out_file),
                   "ak": identity.ak_name.hex() if trusted else None,
                   "enrollment": enrollment,
                   "key": key.name, "pcrs": str(key.selection),
                   "reference_values": len(reference), "executables": len(executables)})
        return
    trusts = (f"trusts AK {identity.ak_name.hex()[:16]}…" if trusted
              else "trusts the AKs `attest enroll` put in the verifier's store")
    click.echo(f"wrote {visible(str(out_file))}: {trusts}, key {key.name!r} "
               f"sealed to {key.selection}, {len(reference)} runtime reference value(s), "
               f"{len(executables)} executable(s)")


def _held_ak(ctx: click.Context, identity: Any) -> bytes:
    """The home's AK public area, once the TPM holds an object of its name at the AK
    handle and it is a restricted signing key.

    identity.json is the host user's file: a public area there shows only what its
    writer chose (the RESTRICTED bit set on a key that signs anything), and a verifier
    that lists it in trusted_aks takes quotes forged in software. The name binds the
    attributes, and the TPM reports the name of what it holds.
    """
    from attest.cli.verifier import named_ak
    from attest.tpm.hierarchy import ak_handle

    named_ak(identity)
    with tpm_from(ctx) as tpm:
        ak_handle(tpm, identity)  # the TPM's object at the AK handle has this name
    return bytes(identity.ak_public)
