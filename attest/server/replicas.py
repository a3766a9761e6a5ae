"""Each serving process's heartbeat in the database.

A process of `attest serve` is one replica: it writes its row (attest.store.replicas) when
it starts and every ``ATTEST_SERVE_HEARTBEAT`` (a duration: 5s, 500ms; default 5s) from a
thread of its own, and removes it when it stops cleanly, so that a replica that died, hangs, or lost
the database falls behind where the operator sees it (`attest replicas`). The list is not
served over HTTP here: it names the deployment's machines, which is for an administrator
(``attest.store.replicas.listed`` and ``Replica.to_json`` are what such a route returns).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from fastapi import FastAPI

from attest.durations import parse_seconds, range_hint
from attest.errors import AttestError, UsageError
from attest.store import replicas as rows
from attest.store.db import DatabaseError
from attest.store.replicas import Replica

if TYPE_CHECKING:
    from attest.server.app import Service

DEFAULT_INTERVAL_S = 5.0
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.1, 3600.0
STALE_AFTER_BEATS = 3  # a replica that missed this many beats is listed as stale

_log = logging.getLogger(__name__)


def interval_from_environment() -> float:
    text = os.environ.get("ATTEST_SERVE_HEARTBEAT", "")
    if not text:
        return DEFAULT_INTERVAL_S
    # The duration syntax of every option (5, 5s, 500ms), not float(): 1e3 or nan is no
    # period a person means.
    try:
        return parse_seconds(text, minimum=MIN_INTERVAL_S, maximum=MAX_INTERVAL_S)
    except ValueError as exc:
        raise UsageError(f"ATTEST_SERVE_HEARTBEAT: {exc}", hint=range_hint(
            round(MIN_INTERVAL_S * 1000), round(MAX_INTERVAL_S * 1000),
            whole_seconds=False)) from None


class Heartbeat:
    """The thread that keeps this replica's row current while the process serves."""

    def __init__(self, service: Service, interval: float) -> None:
        self.service = service
        self.interval = interval
        self.replica = rows.this_process(int(service.clock()))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attest-heartbeat", daemon=True)
        self._failing = False

    @property
    def stale_after(self) -> int:
        return max(1, round(self.interval * STALE_AFTER_BEATS))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 10)
        try:
            rows.remove(self.service.store, self.replica)
        except (AttestError, DatabaseError) as exc:
            # It stops all the same; its row ages and shows stale until forgotten.
            _log.warning("attest: could not remove replica %s's heartbeat: %s",
                         self.replica.replica, exc)

    def _run(self) -> None:
        first = True
        while True:
            try:
                now = int(self.service.clock())
                if first:
                    rows.register(self.service.store,
                                  Replica(**{**self.replica.__dict__, "last_seen": now}))
                    first = False
                else:
                    rows.beat(self.service.store, self.replica, now)
                if self._failing:
                    _log.warning("attest: replica %s reaches the database again",
                                 self.replica.replica)
                self._failing = False
            except (AttestError, DatabaseError) as exc:
                if not self._failing:  # once per outage, not every beat
                    _log.warning("attest: replica %s cannot write its heartbeat: %s",
                                 self.replica.replica, exc)
                self._failing = True
            if self._stop.wait(self.interval):
                return


def mount(app: FastAPI, service: Service) -> Heartbeat:
    """Start the heartbeat with the application and stop it (removing the row) before the
    store closes."""
    heartbeat = Heartbeat(service, interval_from_environment())
    app.state.heartbeat = heartbeat
    app.router.on_startup.append(heartbeat.start)
    app.router.on_shutdown.insert(0, heartbeat.stop)  # before the store closes
    return heartbeat
