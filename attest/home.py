"""Where attest keeps its state on this machine: both sides need it, so no TPM import here."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--home, else ATTEST_HOME, else ~/.local/state/attest."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ATTEST_HOME")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "attest"
