"""Group commit: concurrent callers share transactions; each learns its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from attest.audit.groupcommit import GroupCommit


def _run(group: GroupCommit[int, int], items: list[int]) -> dict[int, int | BaseException]:
    outcomes: dict[int, int | BaseException] = {}

    def call(item: int) -> None:
        try:
            outcomes[item] = group.submit(item)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            outcomes[item] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    batches: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            release.wait(5)
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    leader = threading.Thread(target=group.submit, args=(0,))
    leader.start()
    first_started.wait(5)
    waiting = threading.Thread(target=lambda: _run(group, list(range(1, 21))))
    waiting.start()
    while len(group._queue) < 20:  # all twenty queued behind the first commit
        threading.Event().wait(0.001)
    release.set()
    leader.join()
    waiting.join()
    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 21))  # one commit for the twenty


def test_each_caller_gets_its_own_result() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda items: [i * 10 for i in items])
    assert _run(group, list(range(50))) == {i: i * 10 for i in range(50)}


def test_a_failed_commit_fails_every_caller_in_its_batch_and_only_those() -> None:
    def write(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise OSError("disk full")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(write, max_batch=1)
    outcomes = _run(group, list(range(20)))
    assert isinstance(outcomes.pop(13), OSError)
    assert outcomes == {i: i for i in range(20) if i != 13}


def test_the_group_keeps_working_after_a_failure() -> None:
    calls = [0]

    def write(items: Sequence[int]) -> list[int]:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError("transient")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(OSError, match="transient"):
        group.submit(1)
    assert group.submit(2) == 2
