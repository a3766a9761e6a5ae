"""scripts/bench_signer.py's own arithmetic (its figures are measured, not tested)."""

from __future__ import annotations

from tests.scripts import SCRIPTS, script


def test_quantiles_are_nearest_rank_in_milliseconds() -> None:
    quantile = script("bench_signer").quantile
    samples = [n / 1000 for n in range(50, 0, -1)]  # seconds, any order
    assert quantile(samples, 0.99) == 50.0
    assert quantile(samples, 0.5) == 25.0
    assert quantile([0.007], 0.99) == 7.0


def test_the_bench_runs_it_as_section_signer() -> None:
    assert "signer" in script("bench_signer").SECTIONS
    bench = (SCRIPTS / "bench").read_text()
    assert '"signer": _issue12_section("signer"' in bench
    assert '"bench_signer")' in bench
