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

from collections.abc import Callable

from attest.server.chores import Chore
from attest.store import Store

INTERVAL_S = 300.0
GRACE_S = 3600


def purge_once(store: Store, now: int) -> int:
    """Delete the consumed nonces that expired more than GRACE_S before ``now``."""
    return store.purge_nonces(expired_before=now - GRACE_S)


class NoncePurge(Chore):
    """A daemon thread running :func:`purge_once` every ``interval`` seconds until stopped.
    A round that fails (the store out of reach) is logged; requests say 503 meanwhile."""

    def __init__(self, store: Store, clock: Callable[[], float], *,
                 interval: float = INTERVAL_S) -> None:
        super().__init__("nonce purge", interval)
        self._store = store
        self._clock = clock

    def round(self) -> str | None:
        purged = purge_once(self._store, int(self._clock()))
        return f"purged {purged} expired nonces" if purged else None
