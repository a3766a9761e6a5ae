"""No size cliff: with incremental logs an artifact's size does not grow with the records
measured before its verifier's prefix (docs/verification.md, "Incremental runtime logs").

The host's log is grown in bulk: records appended as attest writes them and each one
extended into the runtime PCR of the rig's swtpm, so the PCR really holds the chain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from attest.artifact import jws
from attest.artifact.model import RuntimeLogBase
from attest.decision import Decision, Denial
from attest.errors import EnvironmentProblem
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import attest_record, encode_log, measurement_content
from attest.host.run import segmented
from attest.host.runtime.log import RuntimeLog
from attest.reasons import Reason
from attest.tpm.pcr import active_banks, extend
from attest.verify.segments import SEGMENT_BYTES, add_segment
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted, denied

RUNTIME_PCR = 15


def grow(rig: Rig, count: int) -> None:
    """Append ``count`` data measurements to the host's runtime log and extend each."""
    log = RuntimeLog(rig.home)
    with log.locked(), rig.tpm() as tpm:
        banks = active_banks(tpm)
        first = log.read().next_recnum()
        records = [attest_record(first + i, RUNTIME_PCR, measurement_content(
            "data", f"bulk-{first + i}",
            {"sha256": hashlib.sha256(str(first + i).encode()).digest()}), banks)
            for i in range(count)]
        with open(log.path, "ab") as handle:
            handle.write(encode_log(records))
        for record in records:
            extend(tpm, RUNTIME_PCR, dict(record.digests))


def _base(decision: Decision) -> RuntimeLogBase:
    facts = decision.facts["runtime_log"]
    return RuntimeLogBase(facts["count"], bytes.fromhex(facts["digest"]))


def _incremental_size(rig: Rig, verifier: Verifier) -> int:
    """Accept the whole log, measure once more, and issue from the acknowledged prefix:
    the size of that artifact, once the verifier accepted it too."""
    whole = verifier.verify(rig.issue())
    accepted(whole)
    grow(rig, 1)
    raw = rig.issue(log_base=_base(whole))
    assert jws.parse(raw).claims.evidence.runtime_log_base == _base(whole)
    accepted(verifier.verify(raw))
    return len(raw)


def test_artifact_size_is_independent_of_the_records_before_the_prefix(rig: Rig) -> None:
    verifier = rig.verifier(rig.policy(runtime_reference=None))
    grow(rig, 10)
    small = _incremental_size(rig, verifier)
    grow(rig, 10_000)
    large = _incremental_size(rig, verifier)
    # The same one-record suffix; only the numbers in it (recnum, count) are longer.
    assert abs(large - small) < 64, (small, large)


def test_a_boot_with_100000_measurements_issues_and_verifies(rig: Rig) -> None:
    """Too large for one artifact (issuance refuses to emit one every verifier would
    deny), the log reaches the verifier in segments; the artifact from the last segment's
    prefix is accepted, and the next one is sent from what that acceptance acknowledged."""
    policy = rig.policy(runtime_reference=None)
    verifier = rig.verifier(policy)
    grow(rig, 100_000)
    with pytest.raises(EnvironmentProblem, match="over the"):
        rig.issue()
    sent: list[int] = []

    def send(base: RuntimeLogBase | None, segment: bytes) -> RuntimeLogBase | Denial:
        sent.append(len(segment))
        return add_segment(policy, verifier.store, rig.identity.ak_name, base, segment,
                           int(time.time()))

    base = segmented(rig.home, None, send)
    assert base is not None and len(sent) > 1 and max(sent) <= SEGMENT_BYTES
    raw = rig.issue(log_base=base)
    assert len(raw) < 64 << 10
    decision = verifier.verify(raw)
    accepted(decision)
    grow(rig, 1)
    accepted(verifier.verify(rig.issue(log_base=_base(decision))))


def test_a_segment_no_quote_confirms_is_never_a_whole_log(rig: Rig) -> None:
    """Segments are the host's word until a quote's replay confirms them: a segment whose
    records are not the ones the PCR holds yields a prefix no quote matches."""
    policy = rig.policy(runtime_reference=None)
    verifier = rig.verifier(policy)
    grow(rig, 3)
    log = (rig.home / "runtime.cel").read_bytes()
    _genuine, *rest = log_prefix.records_of(log)
    other = encode_log([attest_record(0, RUNTIME_PCR, measurement_content(
        "data", "never-extended", {"sha256": bytes(32)}), ["sha256"])])
    base = add_segment(policy, verifier.store, rig.identity.ak_name, None,
                       other + b"".join(rest), int(time.time()))
    assert isinstance(base, RuntimeLogBase) and base.count == 1 + len(rest)
    raw = rig.reissue(rig.issue(), evidence=lambda e: dataclasses.replace(
        e, runtime_log=b"", runtime_log_base=base))
    denied(verifier.verify(raw), "eventlog_mismatch")
    accepted(verifier.verify(rig.issue()))


def test_a_revoked_ak_the_policy_lists_adds_no_segment(rig: Rig) -> None:
    """Under trusted_aks the policy names the AK, but a revocation in the store still
    counts: a revoked AK's segments would take up rows for artifacts that are denied."""
    policy = rig.policy(runtime_reference=None)
    verifier = rig.verifier(policy)
    grow(rig, 2)
    log = (rig.home / "runtime.cel").read_bytes()
    now = int(time.time())
    base = add_segment(policy, verifier.store, rig.identity.ak_name, None, log, now)
    assert isinstance(base, RuntimeLogBase)  # trusted and not revoked: taken
    verifier.store.revoke_ak(rig.identity.ak_name.hex(), "decommissioned", now)
    refused = add_segment(policy, verifier.store, rig.identity.ak_name, None, log, now)
    assert isinstance(refused, Denial) and refused.reason is Reason.AK_REVOKED
