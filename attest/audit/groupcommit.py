"""Group commit: callers that arrive while a commit is in flight share the next one.

A durable commit on SQLite costs an fsync (~1-2 ms here), which would cap a
one-entry-per-transaction log at a few hundred appends a second. Instead, the first
caller becomes the leader and writes everything queued in one transaction; callers
arriving meanwhile wait, and when the leader's commit returns the first of them leads
the next batch. Each caller returns only after the transaction holding its item has
committed, so acknowledged still means durable. No thread of its own: nothing to
start or stop, and an idle log costs nothing. After a shared commit, the next leader
lingers up to ``linger`` seconds (default 1 ms, under an fsync) for as many callers as
shared the last one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False  # set, with done, when this waiter must lead the next batch
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Runs ``write(items) -> results`` (one transaction) for batches of concurrent callers."""

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Result]],
                 max_batch: int = 512, linger: float = 0.001) -> None:
        self._write = write
        self._max_batch = max_batch
        self._linger = linger
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Slot[Item, Result]] = []
        self._busy = False
        self._last_batch = 1

    @property
    def waiting(self) -> int:
        """How many callers are queued for the next commit (not the one in flight)."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: Item) -> Result:
        """``item``'s result, once the transaction that wrote it has committed."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
            self._arrived.notify()
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return _outcome(slot)
            slot.done.clear()
        self._lead()
        return _outcome(slot)

    def _lead(self) -> None:
        with self._lock:
            # The callers of the last shared commit are on their way back: a leader that
            # wrote alone now would leave them all for the commit after (batches of 1, n,
            # 1, n...). Wait for them a little, far less than a commit takes.
            deadline = time.monotonic() + self._linger
            while len(self._queue) < min(self._last_batch, self._max_batch):
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    break
            batch = self._queue[:self._max_batch]
            del self._queue[:len(batch)]
            self._last_batch = len(batch)
        for s in batch:  # what the callers see if the leader is interrupted mid-commit
            s.error = RuntimeError("the audit commit was interrupted")
        try:
            results = self._write([s.item for s in batch])
            for s, result in zip(batch, results, strict=True):
                s.result, s.error = result, None
        except Exception as exc:  # noqa: BLE001 - each caller in the batch raises it
            for s in batch:
                s.error = exc
        finally:
            with self._lock:
                follower = self._queue[0] if self._queue else None
                self._busy = follower is not None
            if follower is not None:
                follower.lead = True
                follower.done.set()
            for s in batch:
                s.done.set()


def _outcome(slot: _Slot[Item, Result]) -> Result:
    if slot.error is not None:
        raise slot.error
    return cast(Result, slot.result)  # set, with error cleared, on success
