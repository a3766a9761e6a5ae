"""Verifying a TPM2_Quote: the PCR values it attests, or the reason it attests nothing.

Checks, in order (each failure names its reason):

1. AK attributes, when the AK is given as a TPMT_PUBLIC   key_attributes_invalid
2. TPMT_SIGNATURE parses                                     quote_malformed
3. signature scheme and hash on the allowlist               alg_not_allowed
4. signature over the exact received TPMS_ATTEST bytes       quote_signature_invalid
5. TPMS_ATTEST parses, magic 0xff544347, type quote 0x8018   quote_malformed
6. qualifiedSigner == the AK's known qualified name          quote_signature_invalid
7. extraData == the expected nonce/binding (constant time)   binding_mismatch
8. clockInfo.safe                                            clock_rollback
9. against the last-seen clock: no rollback in one epoch     clock_rollback
   and, if the policy says so, no reboot                      tpm_reset
10. every required PCR inside pcrSelect                      pcr_selection_insufficient
11. pcrDigest == H_sig(selected values in selection order)   pcr_digest_mismatch

The signature is checked before the body is parsed: only authenticated bytes
reach the TPMS_ATTEST parser.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from attest.errors import EvidenceError
from attest.evidence.ak import check_ak
from attest.evidence.pcrs import DIGEST_SIZES, PCRSelection, PCRValues
from attest.evidence.signatures import VerifyingKey, verify_tpm_signature
from attest.evidence.structures import (
    ST,
    Alg,
    Attest,
    ClockInfo,
    Public,
    QuoteInfo,
    Signature,
    parse_attest,
    parse_signature,
)
from attest.reasons import Reason

_SCHEME_NAMES = {Alg.RSASSA: "rsassa", Alg.RSAPSS: "rsapss", Alg.ECDSA: "ecdsa"}


@dataclass(frozen=True)
class QuoteFacts:
    """What a verified quote proves. ``pcrs`` holds only PCRs inside the signed selection."""

    signer: bytes  # qualifiedSigner: the AK's qualified name, not its name
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int  # obfuscated for keys outside the endorsement/platform hierarchy
    selection: PCRSelection
    pcr_digest: bytes
    pcrs: Mapping[str, Mapping[int, bytes]]
    signature_scheme: str
    signature_hash: str
    new_epoch: bool  # resetCount or restartCount differ from the previous quote's (or none given)
    rebooted: bool  # resetCount differs from the previous quote's


def verify_quote(
    attest: bytes,
    signature: bytes | Signature,
    ak: VerifyingKey,
    *,
    expected_extra_data: bytes,
    pcr_values: PCRValues | None,
    required_pcrs: PCRSelection | None = None,
    expected_signer: bytes | None = None,
    previous: ClockInfo | None = None,
    deny_reset: bool = False,
    require_safe: bool = True,
    allow_sha1: bool = False,
) -> QuoteFacts:
    """Verify a quote and return what it attests, or raise EvidenceError with the reason.

    ``pcr_values`` are the claimed values by (bank, index); values outside the
    quote's selection are ignored. With ``None``, no PCR value is attested and
    ``QuoteFacts.pcrs`` is empty (only the digest is reported).
    ``expected_signer`` is the AK's *qualified* name (TPM2_ReadPublic reports
    it), which depends on the AK's parents, so it cannot be derived from the AK.
    ``previous`` is the clock info last accepted for this AK.
    """
    if isinstance(ak, Public):
        check_ak(ak)
    sig = signature if isinstance(signature, Signature) else parse_signature(signature)
    verify_tpm_signature(
        attest, sig, ak, reason=Reason.QUOTE_SIGNATURE_INVALID, allow_sha1=allow_sha1
    )
    parsed = parse_attest(attest, Reason.QUOTE_MALFORMED)
    info = parsed.attested
    if parsed.type != ST.ATTEST_QUOTE or not isinstance(info, QuoteInfo):
        raise EvidenceError(
            f"attestation type 0x{parsed.type:04x} is not a quote (0x8018)",
            reason=Reason.QUOTE_MALFORMED,
        )
    _check_signer(parsed, expected_signer)
    if not hmac.compare_digest(parsed.extra_data, expected_extra_data):
        raise EvidenceError(
            "the quote's extraData is not the expected nonce/binding",
            reason=Reason.BINDING_MISMATCH,
            hint="the quote was made for another request or challenge",
        )
    new_epoch, rebooted = check_clock(
        parsed.clock_info, previous, deny_reset=deny_reset, require_safe=require_safe
    )
    if required_pcrs is not None:
        check_selection(info.pcr_select, required_pcrs)
    attested = {} if pcr_values is None else attested_pcrs(info, pcr_values, sig.hash_alg)
    return QuoteFacts(
        signer=parsed.qualified_signer,
        extra_data=parsed.extra_data,
        clock_info=parsed.clock_info,
        firmware_version=parsed.firmware_version,
        selection=info.pcr_select,
        pcr_digest=info.pcr_digest,
        pcrs=MappingProxyType(
            {bank: MappingProxyType(values) for bank, values in attested.items()}
        ),
        signature_scheme=_SCHEME_NAMES[Alg(sig.sig_alg)],
        signature_hash=sig.hash_alg,
        new_epoch=new_epoch,
        rebooted=rebooted,
    )


def _check_signer(parsed: Attest, expected_signer: bytes | None) -> None:
    if expected_signer is not None and not hmac.compare_digest(
        parsed.qualified_signer, expected_signer
    ):
        raise EvidenceError(
            "qualifiedSigner is not the AK's qualified name",
            reason=Reason.QUOTE_SIGNATURE_INVALID,
        )


def check_clock(
    clock: ClockInfo,
    previous: ClockInfo | None,
    *,
    deny_reset: bool = False,
    require_safe: bool = True,
) -> tuple[bool, bool]:
    """Return (new_epoch, rebooted), or raise clock_rollback / tpm_reset.

    resetCount and restartCount may be obfuscated (constant while the real
    value is), so they are compared for change only, never for order.
    """
    if require_safe and not clock.safe:
        raise EvidenceError(
            "clockInfo.safe is clear: the TPM clock may have gone back since it was last reported",
            reason=Reason.CLOCK_ROLLBACK,
        )
    if previous is None:
        return True, False
    rebooted = clock.reset_count != previous.reset_count
    if rebooted and deny_reset:
        raise EvidenceError(
            "the TPM was reset since the last accepted quote", reason=Reason.TPM_RESET,
            hint="an administrator must re-admit the host",
        )
    new_epoch = rebooted or clock.restart_count != previous.restart_count
    if not new_epoch and clock.clock < previous.clock:
        raise EvidenceError(
            f"TPM clock went back from {previous.clock} to {clock.clock} within one boot",
            reason=Reason.CLOCK_ROLLBACK,
        )
    return new_epoch, rebooted


def check_selection(selection: PCRSelection, required: PCRSelection) -> None:
    missing = [f"{bank}:{index}" for bank, index in required if not selection.contains(bank, index)]
    if missing:
        raise EvidenceError(
            f"the quote does not cover {', '.join(missing)}",
            reason=Reason.PCR_SELECTION_INSUFFICIENT,
        )


def attested_pcrs(
    info: QuoteInfo, values: PCRValues, hash_alg: str
) -> dict[str, dict[int, bytes]]:
    """The selected PCR values, once their digest matches pcrDigest; others are dropped."""
    h = hashlib.new(hash_alg)
    out: dict[str, dict[int, bytes]] = {}
    for bank, index in info.pcr_select:
        value = values.get((bank, index))
        if value is None:
            raise EvidenceError(
                f"no value supplied for quoted PCR {bank}:{index}",
                reason=Reason.PCR_DIGEST_MISMATCH,
            )
        if len(value) != DIGEST_SIZES[bank]:
            raise EvidenceError(
                f"PCR {bank}:{index} value has {len(value)} bytes, not {DIGEST_SIZES[bank]}",
                reason=Reason.PCR_DIGEST_MISMATCH,
            )
        h.update(value)
        out.setdefault(bank, {})[index] = bytes(value)
    if not hmac.compare_digest(h.digest(), info.pcr_digest):
        raise EvidenceError(
            "the PCR values do not hash to the quote's pcrDigest",
            reason=Reason.PCR_DIGEST_MISMATCH,
        )
    return out
