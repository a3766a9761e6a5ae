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
    logger.setLevel(level(verbose))
    for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    setattr(handler, _OURS, True)
    logger.addHandler(handler)


_OURS = "attest_cli_handler"
