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
from operator import countOf
from types import MappingProxyType
from typing import cast

from attest.errors import EvidenceError
from attest.evidence.ak import check_ak
from attest.evidence.pcrs import DIGEST_SIZES, PCRSelection, PCRValues
from attest.evidence.signatures import VerifyingKey, verify_signature_fields
from attest.evidence.structures import (
    ST,
    Alg,
    ClockInfo,
    Public,
    QuoteFields,
    QuoteInfo,
    Signature,
    parse_attest,
    parse_quote_fields,
    parse_signature,
    parse_signature_fields,
    signature_fields,
)
from attest.reasons import Reason

_SCHEME_NAMES: dict[int, str] = {Alg.RSASSA: "rsassa", Alg.RSAPSS: "rsapss", Alg.ECDSA: "ecdsa"}
_HASH_CONSTRUCTORS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_EMPTY: Mapping[str, Mapping[int, bytes]] = MappingProxyType({})
_BYTES = {bytes}
_new = object.__new__
# The last (quoted, required) pair of selections check_selection passed.
_last_covered: tuple[PCRSelection | None, PCRSelection | None] = (None, None)


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


def verify_quote(
    attest: bytes,
    signature: bytes | Signature,
    ak: VerifyingKey,
    *,
    expected_extra_data: bytes,
    pcr_values: PCRValues | None,
    required_pcrs: PCRSelection | None = None,
    expected_signer: bytes | None = None,
    require_safe: bool = True,
    allow_sha1: bool = False,
) -> QuoteFacts:
    """Verify a quote and return what it attests, or raise EvidenceError with the reason.

    ``pcr_values`` are the claimed values by (bank, index); values outside the
    quote's selection are ignored. With ``None``, no PCR value is attested and
    ``QuoteFacts.pcrs`` is empty (only the digest is reported).
    ``expected_signer`` is the AK's *qualified* name (TPM2_ReadPublic reports
    it), which depends on the AK's parents, so it cannot be derived from the AK.
    The quote's clock is not compared with earlier quotes here: a verifier places it
    among the AK's boots (attest.verify.tpmtime), allowing honest quotes in any order.

    ``ak`` is the caller's word: only a restricted key proves that the TPM made the
    TPMS_ATTEST, and a TPMT_PUBLIC's attributes are checked here but bind nothing
    unless the caller knows its name is the AK's (enrollment, credential activation);
    a bare key shows no attributes at all (`attest quote verify` wants --ak-name, or
    --trust-key-file).
    """
    if isinstance(ak, Public):
        check_ak(ak)
    # The common cases (bytes well formed, every check passing) avoid building the
    # parsed structures; the full parsers and checks decide and name any error.
    if isinstance(signature, Signature):
        sig = signature_fields(signature)
    else:
        sig = parse_signature_fields(signature) or signature_fields(parse_signature(signature))
    verify_signature_fields(
        attest, sig, ak, reason=Reason.QUOTE_SIGNATURE_INVALID, allow_sha1=allow_sha1
    )
    quote = parse_quote_fields(attest)
    if quote is None:
        quote = _parse_quote(attest)
    signer, extra_data, clock_info, firmware, selection, pcr_digest = quote
    if expected_signer is not None and not hmac.compare_digest(signer, expected_signer):
        raise EvidenceError(
            "qualifiedSigner is not the AK's qualified name",
            reason=Reason.QUOTE_SIGNATURE_INVALID,
        )
    if not hmac.compare_digest(extra_data, expected_extra_data):
        raise EvidenceError(
            "the quote's extraData is not the expected nonce/binding",
            reason=Reason.BINDING_MISMATCH,
            hint="the quote was made for another request or challenge",
        )
    if require_safe and not clock_info.safe:
        raise EvidenceError(
            "clockInfo.safe is clear: the TPM clock may have gone back since it was last reported",
            reason=Reason.CLOCK_ROLLBACK,
        )
    if required_pcrs is not None:
        # Both selections are immutable: a pair found covered once stays covered.
        global _last_covered  # noqa: PLW0603 (one tuple, replaced whole)
        last = _last_covered
        if last[0] is not selection or last[1] is not required_pcrs:
            check_selection(selection, required_pcrs)
            _last_covered = (selection, required_pcrs)
    pcrs = _EMPTY if pcr_values is None else _attested_view(
        selection, pcr_digest, pcr_values, sig[1]
    )
    # QuoteFacts(...) without the frozen dataclass's __init__, which sets each field
    # through object.__setattr__: the same object, in a third of the time (QuoteFacts
    # has no __post_init__; tests compare both).
    facts = _new(QuoteFacts)
    facts.__dict__.update(
        signer=signer,
        extra_data=extra_data,
        clock_info=clock_info,
        firmware_version=firmware,
        selection=selection,
        pcr_digest=pcr_digest,
        pcrs=pcrs,
        signature_scheme=_SCHEME_NAMES.get(sig[0]) or _SCHEME_NAMES[Alg(sig[0])],
        signature_hash=sig[1],
    )
    return facts


def _parse_quote(attest: bytes) -> QuoteFields:
    """parse_attest's reading of a quote, or its error; any other type is quote_malformed."""
    parsed = parse_attest(attest, Reason.QUOTE_MALFORMED)
    info = parsed.attested
    if parsed.type != ST.ATTEST_QUOTE or not isinstance(info, QuoteInfo):
        raise EvidenceError(
            f"attestation type 0x{parsed.type:04x} is not a quote (0x8018)",
            reason=Reason.QUOTE_MALFORMED,
        )
    return (parsed.qualified_signer, parsed.extra_data, parsed.clock_info,
            parsed.firmware_version, info.pcr_select, info.pcr_digest)


def check_selection(selection: PCRSelection, required: PCRSelection) -> None:
    if selection.covers(required):  # the usual case, without listing what is missing
        return
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
    return _attested_pcrs(info.pcr_select, info.pcr_digest, values, hash_alg)


def _attested_pcrs(
    selection: PCRSelection, pcr_digest: bytes, values: PCRValues, hash_alg: str
) -> dict[str, dict[int, bytes]]:
    constructor = _HASH_CONSTRUCTORS.get(hash_alg)
    if constructor is None or type(values) is not dict:
        return _attested_pcrs_slow(selection, pcr_digest, values, hash_alg)
    # The common case at C speed: a plain dict, every value present, exactly bytes and
    # of its bank's size. Anything else takes the loop, which names the first problem.
    found_or_none = tuple(map(values.get, selection.pairs))
    if {*map(type, found_or_none)} != _BYTES:
        return _attested_pcrs_slow(selection, pcr_digest, values, hash_alg)
    found = cast("tuple[bytes, ...]", found_or_none)  # all of type bytes
    banks = selection.banks
    if len(banks) == 1:  # the usual quote: one bank
        bank, indices = banks[0]
        if {*map(len, found)} != {DIGEST_SIZES.get(bank)}:
            return _attested_pcrs_slow(selection, pcr_digest, values, hash_alg)
        out = {bank: dict(zip(indices, found))}  # noqa: B905 (as long: one bank)
    else:
        out = {}
        start = 0
        for bank, indices in banks:
            stop = start + len(indices)
            bank_values = found[start:stop]
            if {*map(len, bank_values)} != {DIGEST_SIZES.get(bank)}:
                return _attested_pcrs_slow(selection, pcr_digest, values, hash_alg)
            out.setdefault(bank, {}).update(zip(indices, bank_values, strict=True))
            start = stop
    if not hmac.compare_digest(constructor(b"".join(found)).digest(), pcr_digest):
        raise _digest_mismatch()
    return out


def _attested_view(
    selection: PCRSelection, pcr_digest: bytes, values: PCRValues, hash_alg: str
) -> Mapping[str, Mapping[int, bytes]]:
    """attested_pcrs, read-only (QuoteFacts.pcrs)."""
    one_bank = selection.one_bank
    constructor = _HASH_CONSTRUCTORS.get(hash_alg)
    if one_bank is not None and constructor is not None and type(values) is dict:
        # One bank, two or more PCRs (every quote attest makes), at C speed: each value
        # present, exactly bytes and of the bank's size, else attested_pcrs decides.
        bank, indices, count, size, getter = one_bank
        try:
            found = getter(values)  # the values, in selection order
        except KeyError:
            found = ()
        if countOf(map(type, found), bytes) == count and countOf(map(len, found), size) == count:
            if not hmac.compare_digest(constructor(b"".join(found)).digest(), pcr_digest):
                raise _digest_mismatch()
            # zip without strict=: the lengths are equal, and the flag costs a third
            pcrs = dict(zip(indices, found))  # noqa: B905
            return MappingProxyType({bank: MappingProxyType(pcrs)})
    attested = _attested_pcrs(selection, pcr_digest, values, hash_alg)
    return MappingProxyType({bank: MappingProxyType(pcrs) for bank, pcrs in attested.items()})


def _digest_mismatch() -> EvidenceError:
    return EvidenceError(
        "the PCR values do not hash to the quote's pcrDigest",
        reason=Reason.PCR_DIGEST_MISMATCH,
    )


def _attested_pcrs_slow(
    selection: PCRSelection, pcr_digest: bytes, values: PCRValues, hash_alg: str
) -> dict[str, dict[int, bytes]]:
    h = hashlib.new(hash_alg)
    out: dict[str, dict[int, bytes]] = {}
    for bank, index in selection:
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
    if not hmac.compare_digest(h.digest(), pcr_digest):
        raise _digest_mismatch()
    return out
