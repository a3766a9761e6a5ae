"""Where attest keeps its state on this machine: both sides need it, so no TPM import here.

The order: ``--home``, else ``$ATTEST_HOME``, else ``$XDG_STATE_HOME/attest`` (the XDG
base directory for state that outlives a restart but is no user document), else
``~/.local/state/attest``, which is also XDG's own default for that variable.

One exception keeps an existing host working: when ``$XDG_STATE_HOME`` points elsewhere
but ``$XDG_STATE_HOME/attest`` does not exist while ``~/.local/state/attest`` does (a home
made before attest read the variable, or before it was set), the old home wins. Its TPM
identity and keys are there; an empty new home would make a provisioned host look
unprovisioned, and moving TPM-wrapped key files behind a person's back is worse. Once
``$XDG_STATE_HOME/attest`` exists (made or moved there), it wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

LEGACY_HOME = os.path.join("~", ".local", "state", "attest")


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--home, else ATTEST_HOME, else $XDG_STATE_HOME/attest, else ~/.local/state/attest
    (see the module's note on an existing old home)."""
    if explicit:
        return Path(explicit)
    return Path(default_home(os.environ))


def default_home(environ: Mapping[str, str]) -> str:
    """The home without --home, from ``environ``: os.path only, for the thin `attest run`
    path (attest.cli.thin), which pays for every import."""
    explicit = environ.get("ATTEST_HOME")
    if explicit:
        return explicit
    legacy = os.path.expanduser(LEGACY_HOME)
    state = environ.get("XDG_STATE_HOME", "")
    # The XDG spec: a relative path in these variables is invalid and to be ignored.
    if not state or not os.path.isabs(state):
        return legacy
    xdg = os.path.join(state, "attest")
    if not os.path.isdir(xdg) and os.path.isdir(legacy):
        return legacy
    return xdg
