"""The environment `attest run` hands to CMD: without the variables that inject code.

A measured executable is not all that runs: the dynamic loader, shells and
interpreters read variables that load or run other code (``LD_PRELOAD`` puts a
library inside any dynamically linked program, ``BASH_ENV`` runs a file before
a bash script, ``PYTHONSTARTUP``/``PYTHONPATH`` run or shadow Python code). The
verifier never sees the environment, so these variables are removed unless the
artifact's scope names them (``attest run --keep-env NAME``: the scope then
carries the name and the SHA-256 of the value, signed, verified and audited).

The list is of well-known injection points, not of every variable some program
reads; docs/measurement.md names it and what it leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

from attest.errors import UsageError
from attest.host.runtime.injecting import INJECTING, INJECTING_PREFIXES, injects_code

__all__ = ["INJECTING", "INJECTING_PREFIXES", "injects_code", "kept_variables", "scrubbed"]

# What a kept variable may be called: the verifier shows it, so keep it plain.
MAX_KEPT = 32
MAX_NAME_CHARS = 128


def kept_variables(environ: Mapping[str, str], keep: Collection[str]) -> dict[str, str]:
    """For ``--keep-env``: each named injecting variable's SHA-256 (hex), as the scope
    names it. Names that are not injecting, or not set, are a usage error: keeping
    them would put a claim in the artifact that says nothing."""
    if len(keep) > MAX_KEPT:
        raise UsageError(f"--keep-env: at most {MAX_KEPT} variables")
    kept: dict[str, str] = {}
    for name in keep:
        if not name or len(name) > MAX_NAME_CHARS or "=" in name or not name.isprintable():
            raise UsageError(f"--keep-env {name!r}: not a variable name")
        if not injects_code(name):
            raise UsageError(f"--keep-env {name}: not a variable attest run removes",
                             hint="only the code-injecting ones "
                                  "(`attest docs measurement`) need it")
        if name not in environ:
            raise UsageError(f"--keep-env {name}: not set")
        kept[name] = hashlib.sha256(environ[name].encode("utf-8", "surrogateescape")).hexdigest()
    return kept


def scrubbed(environ: Mapping[str, str], kept: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without injecting variables, except those ``kept`` names with the
    digest of their current value (a value changed since the artifact was made is
    dropped too)."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if injects_code(name):
            digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
            if kept.get(name) != digest:
                continue
        out[name] = value
    return out
