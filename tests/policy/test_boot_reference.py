"""reference.boot may appraise only PCRs every quote covers, and never the runtime PCR."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.errors import PolicyError
from tests.policy.helpers import FULL, ZERO, edit, line_of, load_text

ALLOWED = f'["{"cd" * 32}"]'


def _with_boot(boot: str, text: str = FULL) -> str:
    return edit(text, "reference:\n", f"reference:\n  boot:\n{boot}")


def test_boot_reference_on_sealed_pcrs_loads(tmp_path: Path) -> None:
    policy = load_text(tmp_path, _with_boot(
        f'    pcrs: {{"0": {ALLOWED}}}\n    secure_boot: true\n'
        f"    boot_applications: {ALLOWED}\n"))
    assert policy.reference is not None
    assert policy.reference.boot_appraised_pcrs == {0, 4, 7}
    assert policy.wants_boot_log and policy.log_sources.must_replay() == (15, 0, 4, 7)


def test_a_policy_without_boot_reference_wants_no_boot_log(tmp_path: Path) -> None:
    policy = load_text(tmp_path, FULL)
    assert not policy.wants_boot_log and policy.log_sources.must_replay() == (15,)


def test_a_kernel_command_line_pcr_outside_the_quote_is_refused(tmp_path: Path) -> None:
    # PCR 8 is not sealed, so no quote need cover it: its log is the host's word.
    text = _with_boot(f'    pcrs: {{"8": {ALLOWED}}}\n')
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, text)
    assert "appraises PCR 8" in caught.value.message
    assert caught.value.line == line_of(text, '"8":')


@pytest.mark.parametrize(("boot", "pcr"), [
    ("    secure_boot: true\n", 7),
    (f"    boot_applications: {ALLOWED}\n", 4),
])
def test_secure_boot_and_boot_applications_need_their_pcr_quoted(
        tmp_path: Path, boot: str, pcr: int) -> None:
    sealed = [i for i in range(8) if i != pcr]
    text = edit(FULL, "  sealed: [0, 1, 2, 3, 4, 5, 6, 7]\n",
                f"  sealed: [{', '.join(map(str, sealed))}]\n")
    text = edit(text, f'    "{pcr}": "{ZERO}"\n', "")
    with pytest.raises(PolicyError, match=f"appraises PCR {pcr}"):
        load_text(tmp_path, _with_boot(boot, text))


def test_the_runtime_pcr_is_not_appraised_as_boot_state(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="runtime PCR"):
        load_text(tmp_path, _with_boot(f'    pcrs: {{"15": {ALLOWED}}}\n'))


def test_a_resettable_pcr_is_not_appraised_as_boot_state(tmp_path: Path) -> None:
    # Red team after issue 10 item 11: PCR 23 sealed and appraised loaded; software resets
    # it from locality 0 and extends it again to the allowed value at will, so its value
    # says nothing of how the machine booted.
    text = edit(FULL, "  sealed: [0, 1, 2, 3, 4, 5, 6, 7]\n",
                "  sealed: [0, 1, 2, 3, 4, 5, 6, 7, 23]\n")
    text = edit(text, f'    "7": "{ZERO}"\n', f'    "7": "{ZERO}"\n    "23": "{ZERO}"\n')
    text = _with_boot(f'    pcrs: {{"23": {ALLOWED}}}\n', text)
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, text)
    assert "PCR 23 can be reset" in caught.value.message
    # pcrs.sealed refuses it first; the boot reference check stays for policies built by hand.
    assert caught.value.line in (line_of(text, "  sealed: ["), line_of(text, '"23": ['))
