"""Policy digests computed in software equal what the TPM computes in a trial session."""

from __future__ import annotations

import pytest
from tpm2_pytss import ESYS_TR, TPM2B_DIGEST, TPMT_SYM_DEF, TPMT_TK_VERIFIED
from tpm2_pytss.constants import TPM2_ALG, TPM2_RH, TPM2_SE, TPM2_ST

from attest.evidence import tpmpolicy
from attest.evidence.pcrs import PCRSelection
from attest.tpm.device import TPM, open_tpm
from attest.tpm.pcr import read_pcrs, to_tpml
from tests.conftest import Host

_SESSION_HASH = {"sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384}


def _trial(tpm: TPM, session_hash: str) -> object:
    return tpm.esapi.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.TRIAL,
                                        TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                                        _SESSION_HASH[session_hash])


@pytest.mark.parametrize("session_hash", ["sha256", "sha384"])
@pytest.mark.parametrize("pcrs", ["sha256:0", "sha256:0,1,2,3,4,5,6,7", "sha256:7,15,23",
                                  "sha256:0-23"])
def test_policy_pcr_and_auth_value(host: Host, pcrs: str, session_hash: str) -> None:
    selection = PCRSelection.parse(pcrs)
    with open_tpm(host.sim.tcti) as tpm:
        values = read_pcrs(tpm, selection)
        session = _trial(tpm, session_hash)
        try:
            tpm.esapi.policy_pcr(session, b"", to_tpml(selection))
            after_pcr = bytes(tpm.esapi.policy_get_digest(session))
            tpm.esapi.policy_auth_value(session)
            after_auth = bytes(tpm.esapi.policy_get_digest(session))
        finally:
            tpm.flush(session)
    start = tpmpolicy.initial(session_hash)
    assert after_pcr == tpmpolicy.policy_pcr(start, selection, values, session_hash)
    assert after_auth == tpmpolicy.pcr_auth_policy(selection, values, session_hash)


@pytest.mark.parametrize("session_hash", ["sha256", "sha384"])
@pytest.mark.parametrize("policy_ref", [b"", b"release-channel"])
def test_policy_authorize(host: Host, session_hash: str, policy_ref: bytes) -> None:
    authority_name = bytes.fromhex("000b") + bytes(range(32))
    with open_tpm(host.sim.tcti) as tpm:
        session = _trial(tpm, session_hash)
        try:
            # A trial session does not check the ticket, so a NULL one will do.
            ticket = TPMT_TK_VERIFIED(tag=TPM2_ST.VERIFIED, hierarchy=TPM2_RH.NULL)
            tpm.esapi.policy_authorize(session, TPM2B_DIGEST(bytes(32)), authority_name, ticket,
                                       policy_ref)
            got = bytes(tpm.esapi.policy_get_digest(session))
        finally:
            tpm.flush(session)
    assert got == tpmpolicy.policy_authorize(tpmpolicy.initial(session_hash), authority_name,
                                          policy_ref, session_hash)
