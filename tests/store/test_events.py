"""The event stream's table (attest.store.events) on SQLite and PostgreSQL: events come
back by cursor in id order, bounded, and an event's id never commits after a higher one
(else a poller past the higher id would step over it for good)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from attest.store import Store, default_url
from attest.store import events as stored
from attest.store.events import record_event
from attest.store.schema import MAX_EVENT_DATA, MAX_EVENT_KIND

WAIT_S = 30.0


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(params=["sqlite", "postgresql"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = default_url(tmp_path)
    else:
        server = request.getfixturevalue("postgres")
        url = request.getfixturevalue("pg_url")
        assert server is not None
    store = Store.open(url)
    request.addfinalizer(store.close)
    return store


def test_events_come_back_after_a_cursor_in_order_and_bounded(opened: Store) -> None:
    with opened.read() as tx:
        assert stored.last(tx) == 0 and stored.after(tx, 0) == []
    for n in range(5):
        with opened.write() as tx:
            record_event(tx, "host_state", f"web-{n}", {"state": "untrusted", "n": n}, now=n)
    with opened.read() as tx:
        every = stored.after(tx, 0)
        assert [e.subject for e in every] == [f"web-{n}" for n in range(5)]
        assert [e.id for e in every] == sorted({e.id for e in every})
        assert stored.last(tx) == every[-1].id
        assert stored.after(tx, every[1].id, limit=2) == every[2:4]
        assert every[4].to_json() == {"id": every[4].id, "kind": "host_state",
                                      "subject": "web-4", "time": 4,
                                      "data": {"n": 4, "state": "untrusted"}}
        with pytest.raises(ValueError, match="limit"):
            stored.after(tx, 0, limit=stored.MAX_BATCH + 1)


def test_an_event_that_does_not_fit_fails_the_change_that_reports_it(opened: Store) -> None:
    for kind, subject, data in [("", "s", {}), ("k" * (MAX_EVENT_KIND + 1), "s", {}),
                                ("ké", "s", {}), ("k", "a\x00b", {}),
                                ("k", "s", {"big": "x" * MAX_EVENT_DATA})]:
        with pytest.raises(ValueError), opened.write() as tx:
            tx.execute("INSERT INTO hosts VALUES ('changed', 1, 1)")
            record_event(tx, kind, subject, data, now=1)
    with opened.read() as tx:
        assert tx.scalar("SELECT count(*) FROM hosts") == 0
        assert stored.after(tx, 0) == []


def test_on_postgresql_a_later_event_waits_for_an_earlier_ones_commit(
        postgres: object, pg_url: str) -> None:
    first, second, watcher = Store.open(pg_url), Store.open(pg_url), Store.open(pg_url)
    try:
        holding, release = threading.Event(), threading.Event()
        done: list[str] = []

        def early() -> None:
            with first.write() as tx:
                record_event(tx, "host_state", "early", {}, now=1)
                holding.set()
                assert release.wait(WAIT_S)
            done.append("early")

        def late() -> None:
            with second.write() as tx:
                record_event(tx, "host_state", "late", {}, now=2)
            done.append("late")

        a = threading.Thread(target=early)
        a.start()
        assert holding.wait(WAIT_S)
        b = threading.Thread(target=late)
        b.start()

        def late_waits() -> bool:
            with watcher.read() as tx:
                return bool(tx.scalar("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE wait_event_type = 'Lock'"))

        _wait_for(late_waits, "the later event to wait for the earlier one")
        # What a poller sees meanwhile: nothing yet, so nothing it could step over.
        with watcher.read() as tx:
            assert stored.after(tx, 0) == []
        release.set()
        a.join(WAIT_S)
        b.join(WAIT_S)
        assert done == ["early", "late"]
        with watcher.read() as tx:
            assert [e.subject for e in stored.after(tx, 0)] == ["early", "late"]
    finally:
        for store in (first, second, watcher):
            store.close()
