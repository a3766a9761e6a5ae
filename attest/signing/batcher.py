"""Signing requests gathered into Merkle batches, one TPM signature a batch.

A TPM signs about 5 times a second; a build farm asks for far more. The Batcher lets
many threads ask at once: a request waits up to ``window`` seconds (or until
``max_batch`` requests of its kind are waiting, or until none came for ``quiet``
seconds) for others, and the whole batch is then signed once through
``sign(key_id, batch_value)`` (attest.signing.batch defines the value). Each request's
future resolves with its :class:`Signed`: the shared signature and its own membership
(index, size, root, proof).

Rules, each tested in tests/signing/test_batcher.py:
- a batch holds requests of one (key_id, policy_id) only: a key never signs for
  another policy's requests, and a proof never mixes them;
- a request's index is its arrival order within its batch;
- only what was submitted is signed: the leaves are the submitted signature inputs,
  nothing else, and a request cancelled before its batch is cut is left out;
- a failed signature fails every request of that batch, with the signer's exception,
  and no other batch;
- a request alone in its window is still a batch, of size 1 (empty proof, root = its
  leaf): one format and one verification path, and a batch signature never doubles as
  a bare DSSE signature (see attest.signing.batch).

One signer thread: a TPM executes one command at a time, so a second thread would only
queue in front of it; while it signs, the next batch fills (group commit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from attest.errors import EnvironmentProblem, UsageError
from attest.signing import batch
from attest.signing.batch import Membership

S = TypeVar("S")

DEFAULT_WINDOW = 0.010  # seconds a first request waits for company
DEFAULT_MAX_BATCH = 4096
DEFAULT_MAX_PENDING = 65536  # requests waiting in all groups: beyond, submit refuses


class BatcherClosed(EnvironmentProblem):
    """The batcher is closed (the signer is shutting down): the request was not taken."""


class BatcherFull(EnvironmentProblem):
    """Too many requests are waiting: the request was not taken (retry later)."""


@dataclass(frozen=True)
class Signed(Generic[S]):
    """One request's result: the batch's signature and where the request sits in it."""

    key_id: str
    policy_id: str
    membership: Membership
    value: bytes  # the batch value the signature covers
    signature: S


@dataclass
class _Group(Generic[S]):
    deadline: float  # first arrival + window: the longest any request waits for company
    quiet_until: float  # last arrival + quiet: no one came since, cut now
    leaves: list[bytes] = field(default_factory=list)
    futures: list[Future[Signed[S]]] = field(default_factory=list)


class Batcher(Generic[S]):
    """Thread-safe: ``submit`` from any thread; ``close`` (or the ``with`` block's end)
    signs what is waiting and stops the signer thread."""

    def __init__(self, sign: Callable[[str, bytes], S], *, window: float = DEFAULT_WINDOW,
                 quiet: float | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if not 1 <= max_batch <= batch.MAX_BATCH:
            raise UsageError(f"max_batch {max_batch}: batches hold 1 to {batch.MAX_BATCH}")
        if not window >= 0 or max_pending < 1 or (quiet is not None and not quiet >= 0):
            raise UsageError("the window and quiet time must be >= 0 seconds and "
                             "max_pending >= 1")
        self._sign = sign
        self._window = window
        # A batch is cut early once requests stop coming for ``quiet`` (default: a fifth of
        # the window): a lone request does not wait out the window, a stream of them does.
        self._quiet = window / 5 if quiet is None else min(quiet, window)
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._cond = threading.Condition()
        # (key_id, policy_id) -> waiting requests; dict order = order of first arrival.
        self._groups: dict[tuple[str, str], _Group[S]] = {}
        self._pending = 0
        self._closed = False
        self.batches_signed = 0
        self._thread = threading.Thread(target=self._run, name="attest-batcher", daemon=True)
        self._thread.start()

    def __enter__(self) -> Batcher[S]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(self, key_id: str, policy_id: str, signature_input: bytes) -> Future[Signed[S]]:
        """Queue one signature input (a DSSE PAE) for ``key_id`` under ``policy_id``."""
        if not isinstance(signature_input, bytes | bytearray):
            raise UsageError("the signature input must be bytes")
        if not isinstance(key_id, str) or not isinstance(policy_id, str):
            raise UsageError("key_id and policy_id must be strings")
        leaf = batch.leaf(bytes(signature_input))  # hashed here, in the caller's thread
        future: Future[Signed[S]] = Future()
        with self._cond:
            if self._closed:
                raise BatcherClosed("the signer is closed; the request was not signed")
            if self._pending >= self._max_pending:
                raise BatcherFull(f"{self._pending} signing requests are waiting",
                                  hint="retry later, or raise max_pending")
            now = time.monotonic()
            group = self._groups.get((key_id, policy_id))
            if group is None:
                group = self._groups[(key_id, policy_id)] = _Group[S](now + self._window, 0.0)
            group.quiet_until = now + self._quiet
            group.leaves.append(leaf)
            group.futures.append(future)
            self._pending += 1
            if len(group.leaves) == 1 or len(group.leaves) >= self._max_batch:
                self._cond.notify()
        return future

    def close(self) -> None:
        """Refuse new requests, sign those waiting, and stop the signer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the signer thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (cut := self._next_batch()) is not None:
                self._sign_batch(*cut)
        finally:
            self._fail_waiting()  # only if the loop died: no future is left hanging

    def _next_batch(self) -> tuple[tuple[str, str], list[bytes],
                                   list[Future[Signed[S]]]] | None:
        """Wait for a group that is full, past its window, or flushed by close."""
        with self._cond:
            # The signer is free again: requests that came while it signed get a window
            # from now, so that those the last batch just answered (and who ask again) join
            # them; cut at once, they would form a cohort that takes turns with the other at
            # a serial TPM, each waiting for the other's signature, for good.
            now = time.monotonic()
            for group in self._groups.values():
                group.deadline = max(group.deadline, now + self._window)
                group.quiet_until = max(group.quiet_until, now + self._quiet)
            while True:
                now = time.monotonic()
                for kind, group in self._groups.items():
                    if (self._closed or min(group.deadline, group.quiet_until) <= now
                            or len(group.leaves) >= self._max_batch):
                        leaves = group.leaves[:self._max_batch]
                        futures = group.futures[:self._max_batch]
                        del group.leaves[:self._max_batch], group.futures[:self._max_batch]
                        if not group.leaves:
                            del self._groups[kind]
                        self._pending -= len(leaves)
                        return kind, leaves, futures
                if self._closed:
                    return None
                timeout = (min(min(g.deadline, g.quiet_until) for g in self._groups.values())
                           - now
                           if self._groups else None)
                self._cond.wait(timeout)

    def _sign_batch(self, kind: tuple[str, str], leaves: list[bytes],
                    futures: list[Future[Signed[S]]]) -> None:
        # A request cancelled by its caller is no longer asked for: not signed.
        kept = [(leaf, f) for leaf, f in zip(leaves, futures, strict=True)
                if f.set_running_or_notify_cancel()]
        if not kept:
            return
        key_id, policy_id = kind
        try:
            members = batch.memberships([leaf for leaf, _ in kept])
            value = batch.batch_value(members[0].size, members[0].root)
            signature = self._sign(key_id, value)
        except BaseException as exc:
            for _, future in kept:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches_signed += 1
        for (_, future), member in zip(kept, members, strict=True):
            future.set_result(Signed(key_id, policy_id, member, value, signature))

    def _fail_waiting(self) -> None:
        with self._cond:
            self._closed = True
            groups, self._groups = list(self._groups.values()), {}
            self._pending = 0
        for group in groups:
            for future in group.futures:
                if future.set_running_or_notify_cancel():
                    future.set_exception(BatcherClosed("the signer stopped before signing"))
