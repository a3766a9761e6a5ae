"""The agent's TPM lock: taken in the order asked.

The agent's clients (one at a time, from its socket loop) and its report loop share one
TPM connection, which is not thread-safe. A plain lock is not fair: a busy stream of
clients could take it again and again while the report loop waits, until the host turns
stale for want of a report. Taken in turn, a report waits at most for the run in hand,
and a run at most for one report's issuance.
"""

from __future__ import annotations

import threading
from types import TracebackType


class TurnLock:
    """A mutual-exclusion lock granted first come, first served (a ticket lock)."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._issued = 0  # tickets handed out
        self._serving = 0  # the ticket whose turn it is
        self._held = False
        self._abandoned: set[int] = set()  # tickets whose holders gave up waiting

    def acquire(self) -> None:
        with self._changed:
            ticket = self._issued
            self._issued += 1
            try:
                while ticket != self._serving:
                    self._changed.wait()
            except BaseException:
                # Interrupted while waiting (a signal's exception): its turn is skipped,
                # or every later ticket would wait for ever.
                self._abandoned.add(ticket)
                if ticket == self._serving:  # its turn had come: pass it on
                    self._advance()
                raise
            self._held = True

    def release(self) -> None:
        with self._changed:
            if not self._held:
                raise RuntimeError("release of a TurnLock nobody holds")
            self._held = False
            self._advance()

    def _advance(self) -> None:
        """The next ticket's turn, skipping abandoned ones (the condition's lock held)."""
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.remove(self._serving)
            self._serving += 1
        self._changed.notify_all()

    def waiting(self) -> int:
        """How many wait for their turn (not counting the holder)."""
        with self._changed:
            return self._issued - self._serving - len(self._abandoned) - int(self._held)

    def locked(self) -> bool:
        with self._changed:
            return self._held

    def __enter__(self) -> TurnLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
