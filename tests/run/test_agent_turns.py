"""The agent's TPM lock (attest.host.agent.turns): granted in the order asked, so a
stream of clients cannot keep the report loop from the TPM, and a waiter interrupted
leaves no turn that blocks the others for ever."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import pytest

from attest.host.agent.turns import TurnLock

WAIT_S = 30.0


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.01)


def test_turns_are_granted_in_the_order_asked() -> None:
    lock = TurnLock()
    order: list[str] = []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    lock.acquire()
    threads = []
    for count, name in enumerate(["report", "client-1", "client-2", "client-3"], start=1):
        thread = threading.Thread(target=take, args=(name,))
        thread.start()
        threads.append(thread)
        _until(lambda count=count: lock.waiting() == count)  # it holds its ticket
    assert lock.locked()
    lock.release()
    for thread in threads:
        thread.join(WAIT_S)
    assert order == ["report", "client-1", "client-2", "client-3"]
    assert not lock.locked() and lock.waiting() == 0


def test_a_waiter_interrupted_passes_its_turn_on() -> None:
    lock = TurnLock()
    holder_may_go = threading.Event()

    def hold() -> None:
        with lock:
            holder_may_go.wait(WAIT_S)

    class Interrupted(Exception):
        pass

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        holder_may_go.set()  # the holder releases as the waiter gives up
        raise Interrupted

    holder = threading.Thread(target=hold)
    holder.start()
    _until(lock.locked)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            lock.acquire()  # interrupted while waiting for its turn
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    holder.join(WAIT_S)
    taken = threading.Event()

    def later() -> None:
        with lock:
            taken.set()

    threading.Thread(target=later, daemon=True).start()
    assert taken.wait(WAIT_S), "the abandoned turn blocks the next one"
    assert lock.waiting() == 0


def test_releasing_what_nobody_holds_is_refused() -> None:
    with pytest.raises(RuntimeError):
        TurnLock().release()
