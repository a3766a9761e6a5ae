"""scripts/bench_detection.py's own arithmetic (its figures are measured, not tested)."""

from __future__ import annotations

from tests.scripts import SCRIPTS, script


def test_p99_of_fifty_is_the_largest_but_none_and_p50_the_25th() -> None:
    quantile = script("bench_detection").quantile
    samples = [float(n) for n in range(50, 0, -1)]  # any order
    assert quantile(samples, 0.99) == 50.0  # nearest rank: ceil(49.5) = the 50th
    assert quantile(samples, 0.5) == 25.0
    assert quantile([7.0], 0.99) == 7.0


def test_the_bench_runs_it_as_section_detection() -> None:
    assert "detection" in script("bench_detection").SECTIONS
    bench = (SCRIPTS / "bench").read_text()
    assert '"detection": _issue12_section("detection"' in bench
    assert '"bench_detection")' in bench
