"""What reaches a person's terminal: every string from evidence, rendered visibly.

Subjects, argv, log descriptions, certificate subjects and denial messages are
chosen by whoever made the evidence. Printed as they are, a line feed forges an
extra ``accepted:`` line, an ESC sequence rewrites the screen, and a bidi
override reorders what a person reads. :func:`visible` writes each character
that is not printable (C0 and C1 controls, DEL, line and paragraph separators,
bidi and other format characters, lone surrogates) as a Python-style escape.
JSON output needs none of this: json.dumps escapes all of them (ensure_ascii).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import ClassVar, TextIO


def visible(value: object) -> str:
    """``value`` as text on one line, every non-printable character as \\xNN or \\uNNNN."""
    text = str(value)
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# At most this many progress redraws a second: a terminal is slow and eyes are slower.
_REDRAW_S = 0.1
# Carriage return, then erase to the end of the line (ECMA-48 EL): the line is reused.
_CLEAR = "\r\x1b[K"


def _amount(value: int, unit: str) -> str:
    if unit != "B":
        return f"{value}"
    size = float(value)
    for name in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or name == "GiB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_line(label: str, done: int, total: int | None, unit: str) -> str:
    """One progress line: ``hashing x: 42% (860.0 MiB of 2.0 GiB)``; the label escaped."""
    label = visible(label)
    if total is None or total <= 0:
        return f"{label}: {_amount(done, unit)}{'' if unit == 'B' else ' ' + unit}"
    percent = min(100, done * 100 // total)
    suffix = "" if unit == "B" else f" {unit}"
    return f"{label}: {percent}% ({_amount(done, unit)} of {_amount(total, unit)}{suffix})"


class TerminalProgress:
    """A progress sink (attest.progress) drawing one line on a terminal, rate-limited,
    erased when the task ends. Install it only on a TTY: in a pipe or a log file the
    carriage returns and escapes are noise."""

    # The one whose line is on the screen now, if any: other stderr output erases it first.
    on_screen: ClassVar[TerminalProgress | None] = None

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._next = 0.0
        self._drawn = False

    def update(self, label: str, done: int, total: int | None, unit: str) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + _REDRAW_S
        self._write(_CLEAR + progress_line(label, done, total, unit))
        self._drawn = True
        TerminalProgress.on_screen = self

    def finish(self) -> None:
        if self._drawn:
            self._write(_CLEAR)
            self._drawn = False
        if TerminalProgress.on_screen is self:
            TerminalProgress.on_screen = None
        self._next = 0.0  # the next task (or the next step after other output) draws at once

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or vanished terminal: the work goes on
            pass


def erase_progress() -> None:
    """Erase the progress line before writing something else to the terminal (a log
    line); the next step of the work draws it again below."""
    if TerminalProgress.on_screen is not None:
        TerminalProgress.on_screen.finish()


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that can redraw a line (not TERM=dumb)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM") != "dumb"
