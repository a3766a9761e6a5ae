"""Signing a payload in the host's TPM into a self-proving bundle (attest.signing.bundle).

Like issuance (attest.host.issue), under the runtime log's lock, so that no measurement
slips between the log the bundle carries and the quote vouching for it:
1. reconcile the runtime log with its PCR;
2. sign SHA-256(PAE) with the PCR-bound key in a policy session: when the sealed PCRs no
   longer hold the key's values, the TPM refuses and so does this (no weaker key);
3. quote the sealed PCRs and the runtime PCR with qualifyingData = quote_binding(...);
4. attach the key's certification by the AK (made once per key, cached; the same one
   artifacts carry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from attest.errors import UsageError
from attest.evidence.approval import Approval
from attest.evidence.ekcert import ek_id
from attest.evidence.pcrs import PCRSelection
from attest.evidence.signatures import public_key
from attest.evidence.structures import parse_public_tpm2b
from attest.host.issue import certification
from attest.host.runtime.check import default_boot_log
from attest.host.runtime.log import RuntimeLog, log_pcr, reconcile, runtime_pcr
from attest.host.runtime.prefixes import send_from
from attest.signing.bundle import (
    MAX_PAYLOAD_BYTES,
    Bundle,
    pae_digest,
    quote_binding,
)
from attest.signing.dsse import Envelope, Signature, pae
from attest.tpm import keys as signing
from attest.tpm.device import TPM
from attest.tpm.hierarchy import HostIdentity, load_identity
from attest.tpm.quote import create_quote


def sign_payload(tpm: TPM, home: Path, payload_type: str, payload: bytes, now: int, *,
                 key_name: str = signing.DEFAULT_KEY, include_boot_log: bool = False,
                 approvals: Sequence[Approval] = ()) -> Bundle:
    """Sign ``payload`` as a DSSE envelope of ``payload_type`` and gather its evidence;
    with ``include_boot_log``, the host's TCG boot log too (for policies that appraise
    boot PCRs). A key bound to an authority (PolicyAuthorize) signs under the newest
    unexpired of ``approvals`` for the PCR values the TPM holds, which the bundle names."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"the payload is {len(payload)} bytes; a bundle carries at most "
                         f"{MAX_PAYLOAD_BYTES}", hint="sign it with --statement: the "
                         "statement names the file by its digest")
    identity = load_identity(home)
    key = signing.load_key(home, key_name)
    approval: Approval | None = None
    if key.kind == "authorize":
        if not approvals:
            raise UsageError(f"key {key.name!r} signs only under an authority's approval",
                             hint="pass --approval FILE")
        approval = signing.choose_approval(tpm, approvals, now)
    sealed = key.selection if approval is None else approval.selection
    approval_bytes = None if approval is None else approval.to_bytes()
    boot_log = None
    if include_boot_log:
        path = default_boot_log()
        if path is None:
            raise UsageError("no boot log on this host (securityfs not mounted?)",
                             hint="set ATTEST_BOOT_LOG, or drop --boot-log")
        boot_log = path.read_bytes()
    digest = pae_digest(pae(payload_type, payload))
    eks = _ek_ids(identity)
    runtime = RuntimeLog(home)
    with runtime.locked():
        index = log_pcr(runtime.read(allow_torn_tail=True).records)
        index = runtime_pcr(allow_resettable=True) if index is None else index
        reconcile(tpm, runtime, index, repair=True)
        banks = {bank for bank, _ in sealed.banks}
        bank = sorted(banks)[0]
        selection = PCRSelection.of(
            {b: [*(i for x, i in sealed if x == b), index] for b in banks})
        # Sign first: a changed sealed PCR refuses here, before any evidence is made.
        tss = signing.sign_digest(tpm, key, digest, approval)
        certify, certify_signature = certification(tpm, home, key, identity.ak_name)
        log_bytes = send_from(runtime.load()[0], None)[1]
        quote = create_quote(tpm, identity, selection,
                             quote_binding(digest, now, key.tpm_name, eks, log_bytes,
                                           boot_log, approval_bytes))
    envelope = Envelope(payload_type, payload,
                        (Signature(key.tpm_name.hex(), signing.signature_to_der(tss)),))
    return Bundle(
        envelope=envelope, batch=None, time=now, key_public=key.public, certify=certify,
        certify_signature=certify_signature, quote=quote.message,
        quote_signature=quote.signature, bank=bank,
        pcrs={i: v for (b, i), v in quote.pcr_values.items() if b == bank},
        ak_public=identity.ak_public, ak_qualified_name=identity.ak_qualified_name,
        eks=eks, runtime_log=log_bytes, boot_log=boot_log,
        approval=approval_bytes)


def _ek_ids(identity: HostIdentity) -> tuple[str, ...]:
    return tuple(ek_id(public_key(parse_public_tpm2b(ek.public))) for ek in identity.eks)
