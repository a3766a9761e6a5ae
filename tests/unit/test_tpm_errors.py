"""TPM return codes in words, and the error model the CLI renders."""

from __future__ import annotations

import pytest

from attest.errors import (
    EXIT_ENVIRONMENT,
    EXIT_USAGE,
    PCRPolicyMismatch,
    TPMUnavailable,
    UsageError,
)
from attest.reasons import Reason
from attest.tpm.device import describe_rc, format_one_error, is_policy_failure, resolve_tcti


@pytest.mark.parametrize(("rc", "words"), [
    (0x99D, "a policy check failed"),  # TPM_RC_POLICY_FAIL on session 1, seen after an extend
    (0x1C4, "out of range"),  # TPM_RC_VALUE on parameter 1
    (0x18B, "not refer to a loaded object"),  # TPM_RC_HANDLE on handle 1
    (0x98E, "authorization value is wrong"),  # TPM_RC_AUTH_FAIL on session 1
    (0x921, "dictionary-attack lockout"),  # TPM_RC_LOCKOUT
    (0x902, "out of memory for object contexts"),  # swtpm's 3 slots, no resource manager
    (0xA000A, "tcti layer could not complete"),  # a TCTI-layer code
])
def test_return_codes_in_words(rc: int, words: str) -> None:
    assert words in describe_rc(rc)[0]


def test_object_memory_comes_with_a_hint() -> None:
    assert describe_rc(0x902)[1] is not None


def test_policy_failure_detection() -> None:
    assert is_policy_failure(0x99D)
    assert is_policy_failure(0x9D)
    assert not is_policy_failure(0x1C4)
    assert not is_policy_failure(0x902)
    assert format_one_error(0x921) is None


def test_tcti_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTEST_TCTI", raising=False)
    monkeypatch.delenv("TPM2TOOLS_TCTI", raising=False)
    assert resolve_tcti() == "device:/dev/tpmrm0"
    monkeypatch.setenv("TPM2TOOLS_TCTI", "swtpm:path=/b")
    assert resolve_tcti() == "swtpm:path=/b"
    monkeypatch.setenv("ATTEST_TCTI", "swtpm:path=/a")
    assert resolve_tcti() == "swtpm:path=/a"
    assert resolve_tcti("device:/dev/tpm0") == "device:/dev/tpm0"


def test_exit_codes_and_reasons() -> None:
    assert UsageError("x").exit_code == EXIT_USAGE
    assert TPMUnavailable("x").exit_code == EXIT_ENVIRONMENT
    mismatch = PCRPolicyMismatch("PCRs changed", rc=0x99D, hint="make a new key")
    assert mismatch.reason is Reason.KEY_POLICY_MISMATCH
    assert mismatch.diagnostics() == "key_policy_mismatch: PCRs changed\nhint: make a new key"


