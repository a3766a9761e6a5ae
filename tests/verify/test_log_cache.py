"""A Verifier keeps the logs' appraisal by their text: what it may and may not reuse.

The parsed, replayed and appraised log is a function of the log's bytes and the
policy alone; whether it explains *this* artifact's quote is not, and is checked on
every verification. Artifacts are real, from the rig's swtpm; a lying host is played
by re-signing an artifact with another log inside the TPM.
"""

from __future__ import annotations

import dataclasses

from attest.artifact import jws
from tests.verify.rig import Rig, accepted, denied


def _with_log(rig: Rig, raw: bytes, log: bytes) -> bytes:
    return rig.reissue(raw, evidence=lambda e: dataclasses.replace(e, runtime_log=log))


def test_a_known_log_is_still_compared_with_each_quote(rig: Rig) -> None:
    first = rig.issue()
    old_log = jws.parse(first).claims.evidence.runtime_log
    rig.host.ok("measure", "command", "--", "cat")
    verifier = rig.verifier(rig.policy(single_use=False))  # trusts ls and cat
    accepted(verifier.verify(first))  # its log is now known to the verifier
    second = rig.issue()
    accepted(verifier.verify(second))
    # The second quote covers the cat measurement; the first log does not explain it.
    denied(verifier.verify(_with_log(rig, second, old_log)), "eventlog_mismatch")
    accepted(verifier.verify(second))


def test_a_refused_log_is_refused_again(rig: Rig) -> None:
    raw = rig.issue()
    log = jws.parse(raw).claims.evidence.runtime_log
    moved = _with_log(rig, raw, log.replace(b'"pcr":15', b'"pcr":16', 1))
    edited = log.replace(b'"type":"command"', b'"type":"commanD"', 1)
    assert edited != log
    altered = _with_log(rig, raw, edited)
    verifier = rig.verifier(rig.policy(single_use=False))
    for _ in range(2):
        denied(verifier.verify(moved), "eventlog_mismatch")
        denied(verifier.verify(altered), "eventlog_mismatch")
    accepted(verifier.verify(raw))


def test_reference_values_are_the_verifiers_own(rig: Rig) -> None:
    """Two verifiers with different reference values appraise one log each their way."""
    strict = rig.verifier(rig.policy(single_use=False))  # ls only
    rig.host.ok("measure", "command", "--", "cat")
    raw = rig.issue()
    lenient = rig.verifier(rig.policy(single_use=False))  # ls and cat
    for _ in range(2):
        denied(strict.verify(raw), "reference_value_mismatch")
        accepted(lenient.verify(raw))
