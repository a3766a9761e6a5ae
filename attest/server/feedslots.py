"""How many event streams one host's watch token may hold open at once (its feed:
attest.server.hostfeed).

A stream polls the store every second for up to five minutes. Without a bound, the
holder of one watch token (the host itself, or whoever took its agent's memory) could
open thousands and have the service poll for each. An honest agent holds one, and opens
the next when it ends; a few more cover connections the service has not yet seen die.

A slot is given back when its stream ends, and in any case at the stream's own deadline
(it cannot outlive its timeout or its token): a stream the server never ran to its end
cannot hold a slot for ever, so the host's own watcher is never shut out for longer
than one stream's life. Per process, like the rate limit.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

MAX_STREAMS_PER_HOST = 8
# A stream ends at its deadline, give or take a poll and a write to a slow client.
_SLACK_S = 5.0


class FeedSlots:
    """Open streams per host, at most ``per_host`` at a time."""

    def __init__(self, per_host: int = MAX_STREAMS_PER_HOST, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_host < 1:
            raise ValueError("a host needs at least one stream")
        self.per_host = per_host
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, dict[int, float]] = {}  # host -> slot -> its deadline
        self._numbers = itertools.count()

    def take(self, host: str, lasting: float) -> int | None:
        """A slot for a stream of ``host`` lasting at most ``lasting`` seconds; None when
        the host holds ``per_host`` already."""
        now = self._clock()
        with self._lock:
            held = {slot: until for slot, until in self._open.get(host, {}).items()
                    if until > now}
            if len(held) >= self.per_host:
                self._open[host] = held
                return None
            slot = next(self._numbers)
            held[slot] = now + lasting + _SLACK_S
            self._open[host] = held
            return slot

    def give(self, host: str, slot: int) -> None:
        """The stream of ``slot`` ended."""
        with self._lock:
            held = self._open.get(host)
            if held is not None:
                held.pop(slot, None)
                if not held:
                    del self._open[host]

    def held(self, host: str) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for until in self._open.get(host, {}).values() if until > now)
