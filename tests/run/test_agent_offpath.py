"""What the agent keeps off a run's path. Its stocked challenge (attest.host.agent.challenges):
a nonce fetched after one run is used by the next, once, only while young; the verifier
still checks single use. The prefix the verifier acknowledged is remembered after the
answer, a hint whose loss the next run survives."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from attest.ear import keys as result_keys
from attest.errors import AttestError
from attest.host.agent import wire
from attest.host.agent.challenges import MAX_AGE_S, MIN_LIFETIME_S, ChallengeStock
from attest.host.http import VerifierUnreachable
from attest.host.run import Remote, run_remote
from attest.host.runtime.executable import seal_executable
from tests.conftest import Host
from tests.run.conftest import ready
from tests.run.test_agent import ask_to_run_true
from tests.server.serving import served

__all__ = ["ready"]

WAIT_S = 30.0


class Verifier:
    """A fetch as Remote.challenge_expiring, counting, with a lifetime and a wall clock."""

    def __init__(self, lifetime: int | None = 120) -> None:
        self.lifetime, self.now, self.issued = lifetime, 1_000_000.0, 0
        self.failing: AttestError | None = None
        self.lock = threading.Lock()

    def fetch(self) -> tuple[str, int | None]:
        if self.failing is not None:
            raise self.failing
        with self.lock:
            self.issued += 1
        expires = None if self.lifetime is None else int(self.now) + self.lifetime
        return f"nonce-{self.issued}", expires


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _stock(verifier: Verifier, clock: Clock) -> ChallengeStock:
    return ChallengeStock(verifier.fetch, clock=clock, wall=lambda: verifier.now)


def _refilled(stock: ChallengeStock) -> None:
    stock.refill()
    stock.wait(WAIT_S)


def test_a_stocked_nonce_serves_one_run_and_the_next_asks_again() -> None:
    verifier, clock = Verifier(), Clock()
    stock = _stock(verifier, clock)
    assert stock.take() == "nonce-1"  # nothing in stock: fetched for the run
    _refilled(stock)
    assert verifier.issued == 2
    assert stock.take() == "nonce-2"  # from the stock, no fetch
    assert verifier.issued == 2
    assert stock.take() == "nonce-3"  # the stock is empty again: never handed out twice


def test_concurrent_runs_never_share_a_stocked_nonce() -> None:
    verifier, clock = Verifier(), Clock()
    stock = _stock(verifier, clock)
    _refilled(stock)
    taken: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def run() -> None:
        start.wait(WAIT_S)
        nonce = stock.take()
        with lock:
            taken.append(nonce)

    workers = [threading.Thread(target=run) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT_S)
    assert len(taken) == 8 and len(set(taken)) == 8
    assert "nonce-1" in taken


@pytest.mark.parametrize(("lifetime", "age", "used"), [
    (120, MAX_AGE_S - 0.5, True), (120, MAX_AGE_S + 0.5, False),  # at most MAX_AGE_S
    (20, 9.5, True), (20, 10.5, False),  # at most half its lifetime
    (MIN_LIFETIME_S - 1, 0.0, False), (None, 0.0, False),  # too short, or unknown: never
])
def test_a_nonce_is_used_only_while_young(lifetime: int | None, age: float,
                                          used: bool) -> None:
    verifier, clock = Verifier(lifetime), Clock()
    stock = _stock(verifier, clock)
    _refilled(stock)
    clock.now += age
    verifier.now += age
    assert (stock.take() == "nonce-1") is used
    assert verifier.issued == (1 if used else 2)


def test_a_host_clock_ahead_of_the_verifiers_shortens_the_stock() -> None:
    """The lifetime is read against this host's clock: ahead, it looks shorter (safe)."""
    verifier, clock = Verifier(20), Clock()
    stock = ChallengeStock(verifier.fetch, clock=clock, wall=lambda: verifier.now + 15)
    _refilled(stock)
    clock.now += 3  # half of the 5 s left as this host sees it is 2.5 s
    assert stock.take() == "nonce-2"


def test_a_failed_refill_stocks_nothing_and_the_run_asks_itself() -> None:
    verifier, clock = Verifier(), Clock()
    stock = _stock(verifier, clock)
    verifier.failing = VerifierUnreachable("down")
    _refilled(stock)
    assert isinstance(stock.last_error, VerifierUnreachable)
    with pytest.raises(VerifierUnreachable):
        stock.take()  # the run says the verifier is down: nothing runs
    verifier.failing = None
    assert stock.take() == "nonce-1"


@contextmanager
def _verifier(ready: tuple[Host, Path], tmp_path: Path) -> Iterator[tuple[Host, Any, Remote]]:
    from attest.tpm.device import open_tpm

    host, policy = ready
    home = tmp_path / "verifier"
    with open_tpm(host.sim.tcti) as tpm, served(policy, home) as base:
        yield host, tpm, Remote(base, [result_keys.load(home).public_key()])


def _run(host: Host, tpm: Any, remote: Remote, nonce: str) -> tuple[bool, list[str]]:
    shell = os.path.realpath(shutil.which("sh") or "/bin/sh")
    sealed = seal_executable(shell, ["sha256"])
    done = run_remote(tpm, host.home, ["sh", "-c", "true"], remote, subject="test",
                      key_name="default", sealed=sealed, challenge=lambda: nonce)
    done.executable.close()
    return done.decision.accepted, [d.reason.value for d in done.decision.denials]


def test_a_stocked_nonce_is_accepted_once_and_refused_after(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    """Real swtpm, real `attest serve`: a nonce fetched ahead (as the stock does) makes an
    accepted run, and the verifier refuses it to a second artifact: a stock that handed
    a nonce out twice would run nothing more (fail closed)."""
    with _verifier(ready, tmp_path) as (host, tpm, remote):
        stock = ChallengeStock(remote.challenge_expiring)
        _refilled(stock)
        assert stock.last_error is None
        nonce = stock.take()
        assert _run(host, tpm, remote, nonce) == (True, [])
        accepted, reasons = _run(host, tpm, remote, nonce)
        assert not accepted and "nonce_reused" in reasons, reasons


def _handled(agent: Any) -> object:
    """One `attest run -- sh -c true` through ``agent.handle``: whether accepted."""
    shell = os.path.realpath(shutil.which("sh") or "/bin/sh")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        ask_to_run_true(ours, shell)
        agent.handle(theirs)  # answers, then does what waited for the answer
        answer, out = wire.receive(ours)
    if out is not None:
        os.close(out)
    return answer.get("accepted")


def test_the_agent_answers_from_its_stock_and_refills_after_answering(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    from attest.host.agent.server import Agent

    with _verifier(ready, tmp_path) as (host, tpm, remote):
        agent = Agent(tpm, host.home, remote)
        asked: list[str] = []

        def fetch() -> tuple[str, int | None]:
            nonce, expires = remote.challenge_expiring()
            asked.append(nonce)
            return nonce, expires

        agent.challenges = ChallengeStock(fetch)
        for run in range(3):
            assert _handled(agent) is True
            agent.challenges.wait(WAIT_S)
            # The first run had nothing in stock; each later one used the stocked nonce;
            # each answer was followed by one fetch for the next run.
            assert len(asked) == run + 2


def test_the_prefix_is_remembered_after_the_answer_and_its_loss_is_survived(
        ready: tuple[Host, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from attest.host.agent.server import Agent
    from attest.host.runtime.log import RuntimeLog
    from attest.host.runtime.prefixes import MEMORY_NAME, PrefixMemory

    with _verifier(ready, tmp_path) as (host, tpm, remote):
        agent = Agent(tpm, host.home, remote)
        memory, verifier = PrefixMemory(host.home), f"url:{remote.base}"
        assert _handled(agent) is True
        first = memory.get(verifier, RuntimeLog(host.home).read_epoch())
        assert first is not None  # written once the client had its answer
        # The hint cannot be written (a folder in its place): the run is accepted all
        # the same, the agent says so and serves on.
        (host.home / MEMORY_NAME).unlink()
        (host.home / MEMORY_NAME).mkdir()
        assert _handled(agent) is True
        assert "could not remember the prefix" in capfd.readouterr().err
        (host.home / MEMORY_NAME).rmdir()
        assert _handled(agent) is True  # from the whole log: nothing remembered
        later = memory.get(verifier, RuntimeLog(host.home).read_epoch())
        assert later is not None and later.count > first.count
        agent.challenges.wait(WAIT_S)  # no fetch left running past the verifier
