"""A verifier's periodic chores (nonce purge, stale sweep): one daemon thread each.

A round that fails (the store out of reach, a bug) is logged and the thread lives on:
the next round tries again. No chore is on a decision's path, so none may take a
request down with it.
"""

from __future__ import annotations

import logging
import threading

from attest.errors import AttestError

_log = logging.getLogger(__name__)


class Chore:
    """A daemon thread running :meth:`round` every ``interval`` seconds until stopped."""

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"attest-{name}".replace(" ", "-"),
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def round(self) -> str | None:
        """One round; what it did, to log, or None for nothing worth a line."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                done = self.round()
            except AttestError as exc:
                _log.warning("%s failed: %s", self.name, exc.message)
                continue
            except Exception:  # noqa: BLE001 - a bug logged, and the thread lives on
                _log.exception("%s failed", self.name)
                continue
            if done:
                _log.info("%s", done)
