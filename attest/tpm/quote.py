"""TPM2_Quote with the AK, with the PCR values that match the quoted digest."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from tpm2_pytss import TPMS_ATTEST, TPMT_SIG_SCHEME
from tpm2_pytss.constants import TPM2_ALG

from attest.evidence.pcrs import PCRSelection, PCRValues, composite_digest
from attest.tpm import contention
from attest.tpm.device import TPM
from attest.tpm.hierarchy import HostIdentity, ak_handle
from attest.tpm.pcr import read_pcrs, to_tpml

MAX_NONCE = 64  # TPM2B_DATA holds at most sizeof(TPMT_HA): 64 bytes


@dataclass(frozen=True)
class Quote:
    message: bytes  # TPMS_ATTEST, as signed
    signature: bytes  # TPMT_SIGNATURE
    selection: PCRSelection
    pcr_values: dict[tuple[str, int], bytes]
    ak_public: bytes  # TPM2B_PUBLIC
    nonce: bytes


def create_quote(tpm: TPM, identity: HostIdentity, selection: PCRSelection,
                 nonce: bytes | Callable[[PCRValues], bytes], *,
                 values: PCRValues | None = None) -> Quote:
    """Quote ``selection`` with the AK over ``nonce``; PCR values read to match the digest.

    ``nonce`` may be a function of the PCR values read (an artifact's binding covers
    the values it claims). PCR_Read and Quote are two commands, so another process
    may extend in between; the quoted digest tells, and a mismatch means read and
    quote again. ``values``, when the caller has just read every PCR of ``selection``,
    serve the first attempt (a stale value only costs that attempt).
    """
    ak = ak_handle(tpm, identity)
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)  # the AK's own scheme: ECDSA-SHA256
    known = dict(values) if values is not None and set(values) == set(selection) else None
    for attempt in range(contention.ATTEMPTS):
        if attempt:
            contention.pause(attempt - 1)
        values = known if known is not None else read_pcrs(tpm, selection)
        known = None
        qualifying = nonce(values) if callable(nonce) else nonce
        if len(qualifying) > MAX_NONCE:
            raise ValueError(f"a qualifying nonce is at most {MAX_NONCE} bytes")
        attest, signature = tpm.call("quoting PCRs", tpm.esapi.quote, ak, to_tpml(selection),
                                     qualifying, scheme)
        message = bytes(attest.marshal())[2:]  # drop the TPM2B size: TPMS_ATTEST as signed
        parsed, _ = TPMS_ATTEST.unmarshal(message)
        quoted = bytes(parsed.attested.quote.pcrDigest)
        if hmac.compare_digest(quoted, composite_digest(selection, values, "sha256")):
            return Quote(message, bytes(signature.marshal()), selection, values,
                         identity.ak_public, qualifying)
    # rc 0: no TPM command failed; each quote was of values that moved after the read.
    raise contention.exhausted("quoting PCRs", rc=0)
