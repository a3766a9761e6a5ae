"""The progress line and its sink: what is drawn, how often, and that it is erased."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import pytest

from attest import progress
from attest.cli import verbosity
from attest.cli.terminal import TerminalProgress, is_terminal, progress_line
from attest.host.runtime.executable import seal_executable
from attest.streamdigest import stream_digests

CLEAR = "\r\x1b[K"

LINES = [
    (("hashing a", 0, 2 << 30, "B"), "hashing a: 0% (0 B of 2.0 GiB)"),
    (("hashing a", 3 << 29, 2 << 30, "B"), "hashing a: 75% (1.5 GiB of 2.0 GiB)"),
    (("hashing a", 1536, None, "B"), "hashing a: 1.5 KiB"),
    (("checking", 250_000, 1_000_000, "entries"), "checking: 25% (250000 of 1000000 entries)"),
    (("checking", 7, 0, "entries"), "checking: 7 entries"),
    # More than announced (a file that grew while hashed): never past 100%.
    (("hashing a", 300, 200, "B"), "hashing a: 100% (300 B of 200 B)"),
]


@pytest.mark.parametrize(("args", "line"), LINES)
def test_progress_line(args: tuple[str, int, int | None, str], line: str) -> None:
    assert progress_line(*args) == line


def test_a_label_from_a_file_name_cannot_drive_the_terminal() -> None:
    # A file named with ESC sequences would otherwise rewrite the screen while it hashes.
    line = progress_line("hashing \x1b]0;owned\x07\n", 1, 2, "B")
    assert "\x1b" not in line and "\n" not in line and "\x07" not in line
    assert "\\x1b]0;owned\\x07\\x0a" in line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_line_is_redrawn_at_most_ten_times_a_second_and_erased_at_the_end() -> None:
    stream, clock = io.StringIO(), Clock()
    with progress.shown_on(TerminalProgress(stream, clock)), \
            progress.task("work", 100, "entries") as task:
        task.advance(10)  # drawn at once
        task.advance(10)  # the same instant: skipped
        clock.now += 0.05
        task.advance(10)  # too soon: skipped
        clock.now += 0.06
        task.advance(10)  # drawn
    assert stream.getvalue() == (CLEAR + "work: 10% (10 of 100 entries)"
                                 + CLEAR + "work: 40% (40 of 100 entries)" + CLEAR)


def test_the_line_is_erased_when_the_work_fails() -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError), progress.shown_on(TerminalProgress(stream, Clock())), \
            progress.task("work", 10) as task:
        task.advance(1)
        raise RuntimeError("denied")
    assert stream.getvalue().endswith(CLEAR)


def test_the_next_task_draws_at_once() -> None:
    stream = io.StringIO()
    with progress.shown_on(TerminalProgress(stream, Clock())):
        for label in ("first", "second"):
            with progress.task(label, 1, "entries") as task:
                task.advance(1)
    assert "second: 100%" in stream.getvalue()


def test_nothing_is_drawn_without_a_sink() -> None:
    # A library caller or a server: the task counts and nothing prints.
    with progress.task("work", 10) as task:
        task.advance(10)
    assert task.done == 10


def test_a_sink_draws_nothing_for_a_task_that_never_advanced() -> None:
    stream = io.StringIO()
    with progress.shown_on(TerminalProgress(stream, Clock())), progress.task("work", 10):
        pass
    assert stream.getvalue() == ""


def test_a_terminal_that_went_away_does_not_stop_the_work() -> None:
    stream = io.StringIO()
    stream.close()
    with progress.shown_on(TerminalProgress(stream, Clock())), \
            progress.task("work", 10) as task:
        task.advance(5)
    assert task.done == 5


def test_a_pipe_or_a_file_is_not_a_terminal() -> None:
    assert not is_terminal(io.StringIO())


def test_a_stream_is_hashed_once_for_every_bank_and_counted() -> None:
    data = b"x" * (3 << 20) + b"tail"
    sink = Recorder()
    with progress.shown_on(sink):
        digests, size = stream_digests(io.BytesIO(data), ["sha256", "sha384"], "hashing d")
    assert digests == {"sha256": hashlib.sha256(data).digest(),
                       "sha384": hashlib.sha384(data).digest()}
    assert size == len(data)
    # In-memory: no size to announce; every chunk counted.
    assert sink.updates[-1] == ("hashing d", len(data), None, "B")
    assert sink.finished == 1


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, int, int | None, str]] = []
        self.finished = 0

    def update(self, label: str, done: int, total: int | None, unit: str) -> None:
        self.updates.append((label, done, total, unit))

    def finish(self) -> None:
        self.finished += 1


def test_a_regular_file_announces_its_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"y" * 1000)
    sink = Recorder()
    with progress.shown_on(sink), path.open("rb") as stream:
        stream_digests(stream, ["sha256"], "hashing f")
    assert sink.updates == [("hashing f", 1000, 1000, "B")]


def test_attest_run_counts_the_hashing_of_the_sealed_copy(tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_bytes(b"#!/bin/sh\n" + b"#" * (2 << 20))
    program.chmod(0o755)
    sink = Recorder()
    with progress.shown_on(sink):
        sealed = seal_executable(str(program), ["sha256"])
    try:
        size = program.stat().st_size
        assert sink.updates[-1] == (f"hashing {program}", size, size, "B")
        assert sealed.digests["sha256"] == hashlib.sha256(program.read_bytes()).digest()
    finally:
        sealed.close()


def test_a_log_line_during_long_work_gets_a_clean_line_and_the_progress_returns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr("sys.stderr", screen)
    monkeypatch.setenv("TSS2_LOG", "all+NONE")
    verbosity.configure(1)
    try:
        with progress.shown_on(TerminalProgress(screen, Clock())), \
                progress.task("work", 4, "entries") as task:
            task.advance(1)
            logging.getLogger("attest.test").info("said")
            task.advance(1)  # the same instant, yet drawn again: the line was erased
    finally:
        verbosity.configure(0)
    assert screen.getvalue() == (CLEAR + "work: 25% (1 of 4 entries)" + CLEAR
                                 + "attest: INFO: attest.test: said\n"
                                 + CLEAR + "work: 50% (2 of 4 entries)" + CLEAR)
