"""TSS return codes in words: attest's own for the codes users meet, the TSS's decoder
for every other one, always with the number."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from tpm2_pytss import TSS2_Exception

from attest.cli.main import AttestGroup
from attest.tpm.device import decode_rc, describe_rc, rc_text

# Every format-one error on parameter 1, every version-1 error, every warning, and codes
# of each TSS layer (tcti 10, sys 8, esapi 7, fapi 6, mu 9, rc 11...).
_TPM_CODES = ([0x80 | 0x40 | n for n in range(0x40)] + [0x100 | n for n in range(0x60)]
              + [0x900 | n for n in range(0x30)])
_TSS_CODES = [layer << 16 | n for layer in (6, 7, 8, 9, 10, 11) for n in (1, 2, 5, 10, 11)]


@pytest.mark.parametrize("rc", _TPM_CODES + _TSS_CODES)
def test_no_code_is_left_a_bare_number(rc: int) -> None:
    words, _ = describe_rc(rc)
    assert words and not words.startswith(("TPM error 0x", "TPM warning 0x", "0x"))
    assert f"rc 0x{rc:x})" in rc_text(rc)


@pytest.mark.parametrize(("rc", "text"), [
    # attest's words, and where in the command the TPM found the fault
    (0x1C4, "a value is out of range for this command (parameter 1, TPM rc 0x1c4)"),
    (0x99D, "a policy check failed (session 1, TPM rc 0x99d)"),
    (0x18B, "the handle does not refer to a loaded object (handle 1, TPM rc 0x18b)"),
    # not in attest's tables: the TSS's own words
    (0x1D5, "structure is the wrong size (parameter 1, TPM rc 0x1d5)"),
    (0xA0008, "the TSS's tcti layer could not complete the request: fails to connect to "
              "next lower layer (TSS rc 0xa0008)"),
    (0x6000A, "the TSS's fapi layer could not complete the request: IO failure "
              "(TSS rc 0x6000a)"),
])
def test_rc_text(rc: int, text: str) -> None:
    assert rc_text(rc) == text


def test_a_code_the_decoder_does_not_know_keeps_its_number() -> None:
    _, where, words = decode_rc(0x7F123456)
    assert where is None and words
    assert "rc 0x7f123456" in rc_text(0x7F123456)


def _group_raising(exc: Exception) -> click.Group:
    @click.group(cls=AttestGroup)
    def top() -> None:
        pass

    @top.command()
    def boom() -> None:
        raise exc

    return top


@pytest.mark.parametrize(("rc", "code", "words"), [
    (0x921, 3, "dictionary-attack lockout (TPM rc 0x921)"),  # the TPM's state: environment
    (0x1D5, 1, "structure is the wrong size (parameter 1, TPM rc 0x1d5)"),
])
def test_a_tss_exception_that_escaped_is_told_in_words(rc: int, code: int, words: str) -> None:
    # A TSS2_Exception from a TPM call outside TPM.call is not an "internal error".
    result = CliRunner().invoke(_group_raising(TSS2_Exception(rc)), ["boom"])
    assert result.exit_code == code
    assert words in result.stderr
    assert "internal error" not in result.stderr


def test_any_other_exception_is_still_an_internal_error() -> None:
    result = CliRunner().invoke(_group_raising(RuntimeError("bug")), ["boom"])
    assert result.exit_code == 1
    assert "internal error: RuntimeError: bug" in result.stderr


def test_an_unreachable_tpm_is_named_in_words_with_the_number() -> None:
    from tests.manners.terminal import attest

    ran = attest(["pcr", "read", "0"], {"ATTEST_TCTI": "swtpm:path=/nonexistent/s.sock",
                                        "ATTEST_HOME": "/nonexistent/home"}, tty=False)
    assert ran.returncode == 3, ran.stderr
    assert "cannot reach a TPM through 'swtpm:path=/nonexistent/s.sock': the TSS's tcti " \
        "layer could not complete the request: " in ran.stderr
    assert "(TSS rc 0xa000" in ran.stderr
