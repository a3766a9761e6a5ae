"""scripts/bench_console.py measures the store it says: the fleet it writes holds each
state in its share, the audit log a day of decisions the console counts, the lineage
trees three levels deep; and `attest serve` loads its policy."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from attest.console import decisionlog, lineagetree
from attest.store import Store, default_url, hoststate
from tests.scripts import script


def test_the_filled_store_is_the_fleet_the_figures_name(tmp_path: Path) -> None:
    bench = script("bench_console")
    home = tmp_path / "home"
    home.mkdir()
    url = default_url(home)
    bench.write_policy(tmp_path)  # loads, or raises
    data = bench.fill(url, home, 200, 300)
    now = int(time.time())
    with Store.open(url) as store:
        views = hoststate.hosts(store, now=now, stale_after=bench.STALE_AFTER_S, limit=500)
        assert [v.host for v in views] == [bench.host_id(n) for n in range(200)]
        states = Counter(v.state for v in views)
        assert states == Counter(bench.host_state(n) for n in range(200))
        assert states["revoked"] == 10 and states["untrusted"] == 20  # 5% and 10%
        assert states["stale"] == 30 and states["trusted"] == 140
        assert all(v.reasons for v in views if v.state == "untrusted")
        counted = decisionlog.tally(store, now, 1440)
        assert counted.complete
        assert sum(sum(c.results.values()) for c in counted.minutes.values()) == 300
        assert len(data.jtis) == bench.ROOTS * 16
        deepest = lineagetree.lineage(store, "root-000.c0.g0.x", now)
        assert deepest is not None and len(deepest.ancestors) == 3
