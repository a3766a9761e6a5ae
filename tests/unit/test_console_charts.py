"""The decisions charts (attest.console.charts), from counts made by hand: which series a
chart draws, how buckets add up, and that every label is text."""

from __future__ import annotations

import re
from collections import Counter

from attest.console import charts
from attest.console.decisionlog import MinuteCounts, Tally


def _tally(minutes: dict[int, MinuteCounts], first: int = 100, last: int = 159) -> Tally:
    return Tally(first, last, minutes, 0, True, first * 60)


def test_by_reason_draws_the_five_most_frequent_and_the_rest_as_other() -> None:
    reasons = Counter({"r1": 9, "r2": 8, "r3": 7, "r4": 6, "r5": 5, "r6": 4, "r7": 1})
    tally = _tally({120: MinuteCounts(Counter(denied=20), reasons)})
    shown = charts.series(tally, "reason")
    assert shown.names == ("r1", "r2", "r3", "r4", "r5", "other")
    bucket = charts.buckets(tally, "reason", shown, 1)[20]
    assert bucket.counts["other"] == 5 and bucket.counts["r1"] == 9
    # Five reasons or fewer: no "other".
    few = _tally({120: MinuteCounts(Counter(denied=2), Counter({"b": 1, "a": 1}))})
    assert charts.series(few, "reason").names == ("a", "b")  # a tie: by name


def test_wider_buckets_add_their_minutes_and_bars_show_the_rate() -> None:
    tally = _tally({m: MinuteCounts(Counter(accepted=1, denied=2)) for m in range(100, 160)})
    shown = charts.series(tally, "result")
    quarters = charts.buckets(tally, "result", shown, 15)
    assert [b.start for b in quarters] == [100 * 60 + 900 * i for i in range(4)]
    assert all(b.counts == Counter(accepted=15, denied=30) for b in quarters)
    drawn = charts.svg("label", quarters, shown, per=15, tick_every=1)
    assert drawn.count('class="bar series-accepted"') == 4
    assert "3/min" in drawn  # (15 + 30) / 15 a minute at the peak


def test_every_label_of_a_chart_is_text() -> None:
    bad = '<script>x</script>"><svg onload=alert(1)>'
    tally = _tally({130: MinuteCounts(Counter(denied=1), Counter({bad: 1}))})
    out = charts.figure("chart-hour", "Hour", tally, "reason", per=1, tick_every=10,
                        table_per=1, note="n")
    assert "<script" not in out and "<svg onload" not in out
    assert out.count("&lt;script&gt;x&lt;/script&gt;&quot;&gt;&lt;svg onload=alert(1)&gt;") >= 3
    assert re.search(r'<svg [^>]*role="img" aria-label="Hour, by reason: 1 &lt;script', out)
