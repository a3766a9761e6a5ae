"""-v/--verbose: attest's own log (the logging module) and libtss2's behind it.

attest's modules log through ``logging.getLogger(__name__)`` (all under ``attest``)
and configure nothing; the CLI decides here what reaches stderr. libtss2 logs through
its own switch, the TSS2_LOG environment variable, read when the library first logs:
so it is set before any command imports the TSS (attest.tpm silences it otherwise).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from attest.cli.terminal import erase_progress, visible

# -v count -> attest's level and libtss2's (TSS2_LOG's "all+LEVEL").
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)
_TSS_LEVELS = ("NONE", "ERROR", "WARNING", "DEBUG")

_FORMAT = "attest: %(levelname)s: %(name)s: %(message)s"


def tss_log(verbose: int) -> str:
    """The TSS2_LOG value for ``verbose`` (-v count): silent by default."""
    return "all+" + _TSS_LEVELS[min(verbose, len(_TSS_LEVELS) - 1)]


def level(verbose: int) -> int:
    """attest's log level for ``verbose``: WARNING, INFO at -v, DEBUG from -vv."""
    return _LEVELS[min(verbose, len(_LEVELS) - 1)]


def configure(verbose: int) -> None:
    """Send attest's log records at ``level(verbose)`` and up to stderr (this
    invocation's: a handler of an earlier one in the same process is replaced).

    An explicit TSS2_LOG in the environment wins at any -v: whoever set it asked for
    that level of libtss2 (e.g. one module at trace)."""
    if verbose and "TSS2_LOG" not in os.environ:
        os.environ["TSS2_LOG"] = tss_log(verbose)
    logger = logging.getLogger("attest")
    # Without -v the logger's level is left to whoever embeds attest (pytest's caplog,
    # an application's root level); the handler alone keeps stderr at WARNING.
    logger.setLevel(level(verbose) if verbose else logging.NOTSET)
    for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler.setLevel(level(verbose))
    handler.setFormatter(_VisibleFormatter(_FORMAT))
    setattr(handler, _OURS, True)
    logger.addHandler(handler)


_OURS = "attest_cli_handler"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stderr as it is when a record is emitted, not as it was when the
    handler was made (as logging's own last-resort handler does): in-process callers
    (tests, an embedding program) swap stderr between commands."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler's constructor assigns it; the property decides

    def emit(self, record: logging.LogRecord) -> None:
        erase_progress()  # a log line in the middle of long work starts on a clean line
        super().emit(record)


class _VisibleFormatter(logging.Formatter):
    """The message escaped as the CLI's other output is (attest.cli.terminal), line
    breaks too: a logged path or name chosen by someone else cannot drive the terminal
    or forge a line. A logged traceback keeps its lines, each escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return "\n".join(visible(line) for line in super().formatException(ei).split("\n"))
