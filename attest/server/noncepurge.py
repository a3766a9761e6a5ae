"""Forget consumed nonces once their expiry refuses them on its own.

Challenges cost no write to issue (attest.store.challenges); an acceptance records the
nonce it consumed, and that row is what refuses a second use until the nonce expires.
After that the expiry inside the nonce refuses it, and the row is dead weight: each
replica deletes such rows every :data:`INTERVAL_S` seconds, in a thread of its own,
never on a request's path. Deleting twice (several replicas) deletes nothing more.

Rows are kept :data:`GRACE_S` past their expiry: a replica whose clock runs behind
another's still finds the row of a nonce the other considers expired. The replicas'
clocks must agree within that much (docs/service.md, Challenges), as for ``iat``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from attest.errors import AttestError
from attest.store import Store

INTERVAL_S = 300.0
GRACE_S = 3600

_log = logging.getLogger("attest.server")


def purge_once(store: Store, now: int) -> int:
    """Delete the consumed nonces that expired more than GRACE_S before ``now``."""
    return store.purge_nonces(expired_before=now - GRACE_S)


class NoncePurge:
    """A daemon thread running :func:`purge_once` every ``interval`` seconds until stopped."""

    def __init__(self, store: Store, clock: Callable[[], float], *,
                 interval: float = INTERVAL_S) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attest-nonce-purge",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                purged = purge_once(self._store, int(self._clock()))
            except AttestError as exc:
                # The store out of reach: the next round tries again; requests say 503.
                _log.warning("nonce purge failed: %s", exc.message)
                continue
            except Exception:  # noqa: BLE001 - a bug logged, and the thread lives on
                _log.exception("nonce purge failed")
                continue
            if purged:
                _log.info("purged %d expired nonces", purged)
