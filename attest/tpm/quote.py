"""TPM2_Quote with the AK, with the PCR values that match the quoted digest."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from tpm2_pytss import TPMS_ATTEST, TPMT_SIG_SCHEME
from tpm2_pytss.constants import TPM2_ALG

from attest.errors import TPMError
from attest.evidence.pcrs import PCRSelection, composite_digest
from attest.tpm.device import TPM
from attest.tpm.hierarchy import HostIdentity, ak_handle
from attest.tpm.pcr import read_pcrs, to_tpml

MAX_NONCE = 64  # TPM2B_DATA holds at most sizeof(TPMT_HA): 64 bytes
_READ_ATTEMPTS = 5


@dataclass(frozen=True)
class Quote:
    message: bytes  # TPMS_ATTEST, as signed
    signature: bytes  # TPMT_SIGNATURE
    selection: PCRSelection
    pcr_values: dict[tuple[str, int], bytes]
    ak_public: bytes  # TPM2B_PUBLIC
    nonce: bytes


def create_quote(tpm: TPM, identity: HostIdentity, selection: PCRSelection,
                 nonce: bytes) -> Quote:
    """Quote ``selection`` with the AK over ``nonce``; PCR values read to match the digest.

    PCR_Read and Quote are two commands, so another process may extend in between;
    the quoted digest tells, and a mismatch means read and quote again.
    """
    if len(nonce) > MAX_NONCE:
        raise ValueError(f"a qualifying nonce is at most {MAX_NONCE} bytes")
    ak = ak_handle(tpm, identity)
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)  # the AK's own scheme: ECDSA-SHA256
    for _ in range(_READ_ATTEMPTS):
        values = read_pcrs(tpm, selection)
        attest, signature = tpm.call("quoting PCRs", tpm.esapi.quote, ak, to_tpml(selection),
                                     nonce, scheme)
        message = bytes(attest.marshal())[2:]  # drop the TPM2B size: TPMS_ATTEST as signed
        parsed, _ = TPMS_ATTEST.unmarshal(message)
        quoted = bytes(parsed.attested.quote.pcrDigest)
        if hmac.compare_digest(quoted, composite_digest(selection, values, "sha256")):
            return Quote(message, bytes(signature.marshal()), selection, values,
                         identity.ak_public, nonce)
    raise TPMError("PCRs kept changing while quoting; no consistent quote after "
                   f"{_READ_ATTEMPTS} attempts", rc=0, hint="retry when measurements settle")
