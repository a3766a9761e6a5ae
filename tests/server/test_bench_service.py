"""scripts/bench_service.py's load generator counts what the service answered: against a
real `attest serve` on loopback, challenges give distinct nonces, an artifact sent
twice is one acceptance and one denial, and a decision is read by ``accepted`` (and a
denial's ``reasons``) alone, whatever else the answer carries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from attest.policy import NonceMode
from tests.scripts import script
from tests.server.serving import policy_file, port_of, served
from tests.verify.rig import Rig


def _bench() -> ModuleType:
    return script("bench_service")


@contextmanager
def _served(rig: Rig) -> Iterator[int]:
    """`attest serve` for the rig's host, nonce required: its port."""
    policy = policy_file(rig, nonce=NonceMode.REQUIRED)
    with served(policy, rig.tmp / "verifier") as base:
        yield port_of(base)


def test_the_generator_counts_challenges_acceptances_and_denials(rig: Rig) -> None:
    bench = _bench()
    with _served(rig) as port:
        challenges = bench.generate(port, "/v1/challenges", [b"{}"] * 6, 3, 60,
                                    bench.status_outcome, keep=True)
        assert challenges.outcomes == {"ok": 6} and challenges.count == 6
        nonces = bench._nonces(challenges)
        assert len(set(nonces)) == 6
        first, second = (rig.issue(nonce=n) for n in nonces[:2])
        # The same artifact again only once the first is answered (after=1): a replay.
        load = bench.generate(port, "/v1/verify", bench._bodies([first, first, second]), 2,
                              60, bench.decision_outcome, after=1)
        assert load.count == 3 and load.unsent == 0
        assert load.outcomes["accepted"] == 2
        denied = [k for k in load.outcomes if k.startswith("denied: ")]
        assert len(denied) == 1 and "replayed" in denied[0].split(": ", 1)[1].split(",")
        health = bench.generate(port, "/v1/health", [None] * 4, 2, 60, bench.status_outcome)
        assert health.outcomes == {"ok": 4}
        refused = bench.generate(port, "/v1/verify", [b"{}"], 1, 60, bench.decision_outcome)
        assert refused.outcomes == {"HTTP 422": 1}


def test_a_decision_is_read_by_accepted_alone() -> None:
    bench = _bench()
    accepted = json.dumps({"accepted": True, "ear": "x.y.z", "reasons": []}).encode()
    denied = json.dumps({"accepted": False, "reasons": ["expired", "replayed"],
                         "other": {"nested": 1}}).encode()
    assert bench.decision_outcome(200, accepted) == "accepted"
    assert bench.decision_outcome(200, denied) == "denied: expired,replayed"
    assert bench.decision_outcome(200, b'{"accepted": "yes"}') == "no decision"
    assert bench.decision_outcome(200, b"[true]") == "no decision"
    assert bench.decision_outcome(200, b"not json") == "not JSON"
    assert bench.decision_outcome(503, b'{"accepted": true}') == "HTTP 503"
