"""scripts/bench_signagent.py's own arithmetic and hook (its figures are measured, not
tested)."""

from __future__ import annotations

from tests.scripts import SCRIPTS, script


def test_quantiles_are_nearest_rank_in_milliseconds() -> None:
    quantile = script("bench_signagent").quantile
    samples = [n / 1000 for n in range(50, 0, -1)]  # seconds, any order
    assert quantile(samples, 0.99) == 50.0
    assert quantile(samples, 0.5) == 25.0
    assert quantile([0.007], 0.99) == 7.0


def test_the_figures_name_the_injected_delay_and_each_line() -> None:
    bench = script("bench_signagent")
    runs = [bench.Run("swtpm", 0.01, 256, 8000, 4.0, 100.0, 200.0, 40, 0),
            bench.Run("swtpm + 200 ms", 0.01, 256, 4400, 4.0, 230.0, 240.0, 16, 0)]
    figures = bench._figures(runs, 4.0)
    assert [verdict for _, _, verdict in figures.targets] == ["PASS", "PASS"]
    assert any("sign_digest replaced" in note for note in figures.notes)
    assert len(figures.tables[0][2]) == 2 and figures.tables[0][2][0][3] == "2,000"


def test_the_bench_runs_it_as_section_signagent() -> None:
    assert "signagent" in script("bench_signagent").SECTIONS
    bench = (SCRIPTS / "bench").read_text()
    assert '"signagent": _issue12_section("signagent"' in bench
    assert '"bench_signagent")' in bench
