"""scripts/bench_stream.py times what it says: each artifact verified once, audited, by
worker processes that report every denial, next to bare checks that really verify."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.exceptions import InvalidSignature

from tests.verify.rig import Rig, join, split

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench_stream.py"


def _bench() -> ModuleType:
    """The script as a module (registered first: its dataclasses look their module up)."""
    if "bench_stream" in sys.modules:
        return sys.modules["bench_stream"]
    spec = importlib.util.spec_from_file_location("bench_stream", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_stream"] = module
    spec.loader.exec_module(module)
    return module


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


def test_deal_gives_every_run_the_same_spread_round_robin_across_hosts() -> None:
    bench = _bench()
    per_host = [[f"h{h}-{k}".encode() for k in range(6)] for h in range(3)]
    piles = bench.deal(per_host, 3)
    assert piles[0] == [b"h0-0", b"h1-0", b"h2-0", b"h0-3", b"h1-3", b"h2-3"]
    assert piles[2] == [b"h0-2", b"h1-2", b"h2-2", b"h0-5", b"h1-5", b"h2-5"]


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
