"""scripts/bench_stream.py times what it says: each artifact verified once, audited, by
worker processes that report every denial, next to bare checks that really verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.exceptions import InvalidSignature

from tests.scripts import script
from tests.verify.rig import Rig, join, split


def _bench() -> ModuleType:
    return script("bench_stream")


def _bench_rig(rig: Rig, tmp_path: Path) -> object:
    """The bench's rig over the test rig's policy (its AK trusted by the policy) and a
    fresh verifier home and store on disk."""
    bench = _bench()
    made = bench.Rig(tmp_path / "bench")
    made.verifier_home.mkdir(parents=True)
    policy = rig.policy()
    assert policy.path is not None
    shutil.copy(policy.path, made.policy_path)
    return made


def test_schedule_keeps_each_hosts_issuance_order_across_batches() -> None:
    bench = _bench()
    per_host = [[f"h{h}-{k}".encode() for k in range(5)] for h in range(3)]
    batches = bench.schedule(per_host, [(2, 1), (1, 1)])
    assert batches == [([b"h0-0", b"h1-0"], [b"h0-1", b"h1-1", b"h2-0"]),
                       ([b"h0-2"], [b"h0-3", b"h1-2", b"h2-1"])]
    # Verified batch after batch, each host's artifacts come in the order they were made.
    order = [a for warm, share in batches for a in (*warm, *share)]
    for h in range(3):
        mine = [a for a in order if a.startswith(f"h{h}-".encode())]
        assert mine == per_host[h][:len(mine)]


def test_premade_stream_sends_from_acknowledged_prefixes_and_all_accepted(
        rig: Rig, tmp_path: Path) -> None:
    """make_chain issues each command's artifact in the versions `attest run` could send
    (from an earlier artifact's prefix, or whole); a caller sends the newest version
    whose base the verifier acknowledged, every artifact is accepted, and a prefix the
    verifier does not hold is retried whole, as attest run does."""
    from attest.artifact import jws
    from attest.eventlog.prefix import records_of
    from attest.host.runtime.prefixes import acknowledged
    from attest.policy import load_policy

    bench = _bench()
    host = bench.Host("web-1", rig.host.sim, rig.home, rig.host.sim.tcti)
    with host.tpm() as tpm:  # attest run's record, for the policy (as the bench does)
        bench.make_artifact(tpm, host, bench._IdOnly())
    made = _bench_rig(rig, tmp_path)
    chain = bench.make_chain(host, load_policy(made.policy_path), 6)
    assert [m.count for m in chain] == list(range(chain[0].count, chain[0].count + 6))
    for k, m in enumerate(chain):
        lags = [lag for lag in bench.LAGS if k >= lag]
        assert [count for count, _ in m.from_prefix] == [chain[k - n].count for n in lags]
        for (_, raw), lag in zip(m.from_prefix, lags, strict=True):
            evidence = jws.parse(raw).claims.evidence
            assert evidence.runtime_log_base == chain[k - lag].acknowledges
            assert len(records_of(evidence.runtime_log)) == lag
        whole = jws.parse(m.whole).claims.evidence
        assert whole.runtime_log_base is None
        assert len(records_of(whole.runtime_log)) == m.count

    verifier = bench.VerifierUnderTest(made.policy_path, made.store_url, made.verifier_home)
    try:  # what the bench predicts the verifier acknowledges is what it acknowledges
        decision = verifier.decide(chain[0].whole)
        assert decision.accepted, decision.reasons
        assert acknowledged(decision.facts) == chain[0].acknowledges
    finally:
        verifier.close()
    # chain[1] is never verified: told it was, the caller sends from its prefix, is denied
    # log_prefix_unknown and retries whole; the next one is sent from chain[2]'s prefix.
    run = bench.run_callers(made, "audited", (1, 1), chain[2:4], [], "audited",
                            {"web-1": chain[1].count})
    assert (run.count, run.denied, run.retries, run.lags) == (2, (), 1, (1, 1))
    # Told the truth, the caller sends from what the verifier holds: no retry.
    run = bench.run_callers(made, "audited", (1, 1), chain[4:], [], "audited",
                            {"web-1": chain[3].count})
    assert (run.count, run.denied, run.retries, run.lags) == (2, (), 0, (1, 1))
    # Nothing acknowledged for the host: the whole log.
    assert chain[5].pick(lambda host, count: False) is chain[5].whole


def test_stream_workers_verify_each_artifact_once_and_report_denials(
        rig: Rig, tmp_path: Path) -> None:
    bench = _bench()
    made = _bench_rig(rig, tmp_path)
    warm, *artifacts = (rig.issue() for _ in range(4))
    first = bench.run_callers(made, "audited", (2, 1), artifacts, [warm], "audited")
    assert first.count == 3
    assert first.denied == ()
    # Single use: the same artifacts again are denied, and the run says so (the stream
    # raises on any denial rather than time it).
    again = bench.run_callers(made, "audited", (2, 1), artifacts, [], "audited")
    assert again.count == 3
    assert len(again.denied) == 3
    assert all(reason for reason in again.denied)


def test_bare_checks_verify_every_signature(rig: Rig, tmp_path: Path) -> None:
    bench = _bench()
    raw = rig.issue()
    bench.bare_checks(raw)()  # a real artifact passes
    header, payload, signature = split(raw)
    flipped = signature[:-1] + bytes([signature[-1] ^ 1])
    forged = join(json.dumps(header).encode(), json.dumps(payload).encode(), flipped)
    with pytest.raises(InvalidSignature):
        bench.bare_checks(forged)()
    run = bench.run_callers(_bench_rig(rig, tmp_path), "bare", (2, 2), [raw, raw], [],
                            "bare")
    assert run.count == 2 and run.denied == ()
