"""No size cliff: with incremental logs an artifact's size does not grow with the records
measured before its verifier's prefix (docs/verification.md, "Incremental runtime logs").

The host's log is grown in bulk: records appended as attest writes them and each one
extended into the runtime PCR of the rig's swtpm, so the PCR really holds the chain.
"""

from __future__ import annotations

import hashlib

from attest.artifact import jws
from attest.artifact.model import RuntimeLogBase
from attest.eventlog.cel import attest_record, encode_log, measurement_content
from attest.runtime.log import RuntimeLog
from attest.tpm.pcr import active_banks, extend
from attest.verify.decision import Decision
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted

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
