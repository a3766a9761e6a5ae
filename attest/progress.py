"""How far long work has got, for whoever shows it: the library counts, a shell draws.

Hashing a large file or recomputing a log of a million entries takes seconds. The
library code doing it calls :func:`task` and advances it; it never prints. Nothing is
shown unless a shell installed a :class:`ProgressSink` with :func:`shown_on` (the CLI
does so only when stderr is a terminal), so a library caller, a server and a pipe get
no output and pay one attribute check a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class ProgressSink(Protocol):
    """Where progress is shown: asked often, it decides itself how often to draw."""

    def update(self, label: str, done: int, total: int | None, unit: str) -> None: ...

    def finish(self) -> None: ...


class Task:
    """One piece of long work: ``label`` (what is done), ``total`` units when known."""

    def __init__(self, sink: ProgressSink | None, label: str, total: int | None,
                 unit: str) -> None:
        self._sink = sink
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0

    def advance(self, units: int) -> None:
        self.done += units
        if self._sink is not None:
            self._sink.update(self.label, self.done, self.total, self.unit)


_sink: ContextVar[ProgressSink | None] = ContextVar("attest_progress_sink", default=None)


@contextmanager
def shown_on(sink: ProgressSink) -> Iterator[None]:
    """Show the progress of every task started inside on ``sink``."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


@contextmanager
def task(label: str, total: int | None = None, unit: str = "B") -> Iterator[Task]:
    """A task to advance; the sink's line is cleared when it ends, however it ends
    (an error message must not land after a half-drawn progress line)."""
    sink = _sink.get()
    try:
        yield Task(sink, label, total, unit)
    finally:
        if sink is not None:
            sink.finish()
