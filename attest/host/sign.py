"""Signing a payload in the host's TPM into a self-proving bundle (attest.signing.bundle).

Like issuance (attest.host.issue), under the runtime log's lock, so that no measurement
slips between the log the bundle carries and the quote vouching for it:
1. reconcile the runtime log with its PCR;
2. sign SHA-256(PAE) (for a batch, the batch value: attest.signing.batch) with the
   PCR-bound key in a policy session: when the sealed PCRs no longer hold the key's
   values, the TPM refuses and so does this (no weaker key);
3. quote the sealed PCRs and the runtime PCR with qualifyingData = quote_binding(...);
4. attach the key's certification by the AK (made once per key, cached; the same one
   artifacts carry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from attest.errors import BatchProofError, UsageError
from attest.evidence.approval import Approval
from attest.evidence.ekcert import ek_id
from attest.evidence.pcrs import PCRSelection
from attest.evidence.signatures import public_key
from attest.evidence.structures import parse_public_tpm2b
from attest.host.issue import certification
from attest.host.runtime.check import default_boot_log
from attest.host.runtime.log import RuntimeLog, log_pcr, reconcile, runtime_pcr
from attest.host.runtime.prefixes import send_from
from attest.signing import batch
from attest.signing.batch import Membership
from attest.signing.bundle import (
    MAX_PAYLOAD_BYTES,
    Bundle,
    low_s,
    members_text,
    pae_digest,
    quote_binding,
    render,
)
from attest.signing.dsse import Envelope, Signature, pae
from attest.tpm import keys as signing
from attest.tpm.device import TPM
from attest.tpm.hierarchy import HostIdentity, load_identity
from attest.tpm.quote import create_quote


@dataclass(frozen=True)
class Signing:
    """One TPM signature and the evidence vouching for it: a bundle but for its envelope's
    payload and its batch membership. For a single payload ``signed`` is SHA-256(PAE);
    for a batch, the batch value (attest.signing.batch), shared by all its bundles."""

    signed: bytes
    signature: bytes  # DER ECDSA P-256 over ``signed``
    key_name: bytes
    time: int
    key_public: bytes
    certify: bytes
    certify_signature: bytes
    quote: bytes
    quote_signature: bytes
    bank: str
    pcrs: dict[int, bytes]
    ak_public: bytes
    ak_qualified_name: bytes
    eks: tuple[str, ...]
    runtime_log: bytes
    boot_log: bytes | None
    approval: bytes | None

    def bundle(self, payload_type: str, payload: bytes,
               membership: Membership | None = None) -> Bundle:
        """The bundle of one payload this signature covers: alone (``signed`` is its PAE's
        digest) or as the member ``membership`` of the signed batch."""
        return self._bundle(self._envelope(payload_type, payload, membership), membership)

    def bundle_bytes(self, payload_type: str, payload: bytes,
                     membership: Membership | None = None) -> bytes:
        """``bundle(...).to_bytes()``, made from the evidence's text rendered once for
        the whole batch: a batch's bundles differ only in their envelope and membership,
        and the agent makes them by the hundred while the next batch waits."""
        envelope = self._envelope(payload_type, payload, membership)
        return render(Bundle.head_json(envelope, membership), self._evidence_text)

    @cached_property
    def _evidence_text(self) -> str:
        return members_text(self._bundle(
            Envelope("", b"", (Signature(self.key_name.hex(), self.signature),)),
            None).evidence_json())

    def _envelope(self, payload_type: str, payload: bytes,
                  membership: Membership | None) -> Envelope:
        envelope = Envelope(payload_type, payload,
                            (Signature(self.key_name.hex(), self.signature),))
        try:
            expected = (pae_digest(envelope.pae()) if membership is None
                        else batch.signed_value(envelope.pae(), membership))
        except BatchProofError:
            expected = b""
        if expected != self.signed:  # a bundle the verifier would deny is never written
            raise UsageError("this payload is not what the TPM signed")
        return envelope

    def _bundle(self, envelope: Envelope, membership: Membership | None) -> Bundle:
        return Bundle(
            envelope=envelope, batch=membership, time=self.time, key_public=self.key_public,
            certify=self.certify, certify_signature=self.certify_signature, quote=self.quote,
            quote_signature=self.quote_signature, bank=self.bank, pcrs=self.pcrs,
            ak_public=self.ak_public, ak_qualified_name=self.ak_qualified_name,
            eks=self.eks, runtime_log=self.runtime_log, boot_log=self.boot_log,
            approval=self.approval)


def sign_payload(tpm: TPM, home: Path, payload_type: str, payload: bytes, now: int, *,
                 key_name: str = signing.DEFAULT_KEY, include_boot_log: bool = False,
                 approvals: Sequence[Approval] = ()) -> Bundle:
    """Sign ``payload`` as a DSSE envelope of ``payload_type`` and gather its evidence;
    with ``include_boot_log``, the host's TCG boot log too (for policies that appraise
    boot PCRs). A key bound to an authority (PolicyAuthorize) signs under the newest
    unexpired of ``approvals`` for the PCR values the TPM holds, which the bundle names."""
    check_payload(payload)
    signed = pae_digest(pae(payload_type, payload))
    return sign_evidence(tpm, home, signed, now, key_name=key_name,
                         include_boot_log=include_boot_log,
                         approvals=approvals).bundle(payload_type, payload)


def sign_batch(tpm: TPM, home: Path, payloads: Sequence[tuple[str, bytes]], now: int, *,
               key_name: str = signing.DEFAULT_KEY, include_boot_log: bool = False,
               approvals: Sequence[Approval] = ()) -> list[Bundle]:
    """Sign ``payloads`` ((payload type, payload) each) with one TPM signature and one
    quote over their batch (attest.signing.batch): one bundle each, in the order given.
    The agent batches concurrent requests through attest.signing.batcher instead; this
    is the same signing for a caller holding them all."""
    for _, payload in payloads:
        check_payload(payload)
    value, members = batch.build([pae(t, p) for t, p in payloads])
    evidence = sign_evidence(tpm, home, value, now, key_name=key_name,
                             include_boot_log=include_boot_log, approvals=approvals)
    return [evidence.bundle(t, p, m) for (t, p), m in zip(payloads, members, strict=True)]


def check_payload(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"the payload is {len(payload)} bytes; a bundle carries at most "
                         f"{MAX_PAYLOAD_BYTES}", hint="sign it with --statement: the "
                         "statement names the file by its digest")


def sign_evidence(tpm: TPM, home: Path, signed: bytes, now: int, *,
                  key_name: str = signing.DEFAULT_KEY, include_boot_log: bool = False,
                  approvals: Sequence[Approval] = ()) -> Signing:
    """Have the TPM sign the 32-byte digest ``signed`` with the PCR-bound key, and quote
    with qualifyingData binding it (attest.signing.bundle.quote_binding)."""
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
        if not boot_log:  # the verifier refuses an empty boot log (no second form of none)
            raise UsageError(f"the boot log {path} is empty", hint="drop --boot-log")
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
        tss = signing.sign_digest(tpm, key, signed, approval)
        certify, certify_signature = certification(tpm, home, key, identity.ak_name)
        log_bytes = send_from(runtime.load()[0], None)[1]
        quote = create_quote(tpm, identity, selection,
                             quote_binding(signed, now, key.tpm_name, eks, log_bytes,
                                           boot_log, approval_bytes))
    return Signing(
        signed=signed, signature=low_s(signing.signature_to_der(tss)), key_name=key.tpm_name,
        time=now, key_public=key.public, certify=certify,
        certify_signature=certify_signature, quote=quote.message,
        quote_signature=quote.signature, bank=bank,
        pcrs={i: v for (b, i), v in quote.pcr_values.items() if b == bank},
        ak_public=identity.ak_public, ak_qualified_name=identity.ak_qualified_name,
        eks=eks, runtime_log=log_bytes, boot_log=boot_log, approval=approval_bytes)


def _ek_ids(identity: HostIdentity) -> tuple[str, ...]:
    return tuple(ek_id(public_key(parse_public_tpm2b(ek.public))) for ek in identity.eks)
