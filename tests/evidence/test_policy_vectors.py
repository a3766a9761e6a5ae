"""PolicyPCR digests from ../shared/vectors/policy (tpm2-tss FAPI test data)."""

from __future__ import annotations

import json

import pytest
from evidence_helpers import vector_dir

from attest.evidence.pcrs import PCRSelection
from attest.evidence.tpmpolicy import initial, policy_pcr


def _vectors() -> list[dict[str, object]]:
    data = json.loads((vector_dir("policy") / "policypcr_vectors.json").read_text())
    vectors: list[dict[str, object]] = data["vectors"]
    return vectors


@pytest.mark.parametrize("session_hash", ["sha256", "sha384"])
def test_policy_pcr_digests_match_tpm2_tss(session_hash: str) -> None:
    for vector in _vectors():
        pcrs: dict[str, str] = vector["pcrs"]  # type: ignore[assignment]
        selection = PCRSelection.of({"sha256": [int(i) for i in pcrs]})
        values = {("sha256", int(i)): bytes.fromhex(v) for i, v in pcrs.items()}
        digest = policy_pcr(initial(session_hash), selection, values, session_hash)
        assert digest.hex() == vector[session_hash], vector["name"]
