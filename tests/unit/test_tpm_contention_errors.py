"""Contention for the TPM is the environment's state (exit 3), not a refusal (exit 1)."""

from __future__ import annotations

import pytest
from tpm2_pytss import TSS2_Exception

from attest.errors import EXIT_ENVIRONMENT, TPMEnvironmentError
from attest.tpm import contention
from attest.tpm.device import tpm_error


@pytest.mark.parametrize("rc", [
    0x128,  # TPM_RC_PCR_CHANGED: a PCR extended during the policy session
    0x902,  # TPM_RC_OBJECT_MEMORY: other clients' objects fill a simulator's 3 slots
    0x903,  # TPM_RC_SESSION_MEMORY
])
def test_contention_codes_are_environment_errors(rc: int) -> None:
    error = tpm_error(TSS2_Exception(rc), "signing")
    assert isinstance(error, TPMEnvironmentError)
    assert error.exit_code == EXIT_ENVIRONMENT
    assert error.hint


def test_pcr_changed_is_recognised_on_the_tpm_layer_only() -> None:
    assert contention.is_pcr_changed(0x128)
    assert not contention.is_pcr_changed(0x99D)  # TPM_RC_POLICY_FAIL: the PCRs differ
    assert not contention.is_pcr_changed(0x80128)  # another layer's code
