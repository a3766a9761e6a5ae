"""What a measurement is of: a file, a command about to run, a named piece of data.

Each builder returns the record content (see attest.eventlog.cel): its type, a
name a reference value can match, the digests of what was measured, and the
details a reader needs (path, size, argv, value).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attest.errors import UsageError
from attest.eventlog.cel import measurement_content

_CHUNK = 1 << 20


def file_digests(path: Path, banks: Sequence[str]) -> dict[str, bytes]:
    """Digests of a file's bytes, read once in chunks (large files cost no memory)."""
    hashers = {bank: hashlib.new(bank) for bank in banks}
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {bank: hasher.digest() for bank, hasher in hashers.items()}


def _regular_file(path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.exists():
        raise UsageError(f"no such file: {path}")
    if not resolved.is_file():
        raise UsageError(f"not a regular file: {path}")
    return resolved


def file_content(path: Path, banks: Sequence[str]) -> dict[str, Any]:
    resolved = _regular_file(path)
    return measurement_content("file", str(resolved), file_digests(resolved, banks),
                               path=str(resolved), size=resolved.stat().st_size)


def resolve_executable(program: str) -> Path:
    """The file `exec` would run for ``program``: a path, or a name looked up in PATH."""
    if os.sep in program:
        resolved = _regular_file(Path(program))
    else:
        found = shutil.which(program)
        if found is None:
            raise UsageError(f"command not found: {program}", hint="give a path or fix PATH")
        resolved = Path(found).resolve()
    if not os.access(resolved, os.X_OK):
        raise UsageError(f"not executable: {resolved}")
    return resolved


def command_content(argv: Sequence[str], banks: Sequence[str]) -> dict[str, Any]:
    """The executable's digest and the whole argument vector: what is about to run."""
    if not argv:
        raise UsageError("no command given", hint="write: attest measure command -- CMD ARGS...")
    executable = resolve_executable(argv[0])
    return measurement_content("command", str(executable), file_digests(executable, banks),
                               path=str(executable), argv=list(argv))


def data_content(name: str, value: str, banks: Sequence[str]) -> dict[str, Any]:
    encoded = value.encode("utf-8")
    return measurement_content("data", name,
                               {bank: hashlib.new(bank, encoded).digest() for bank in banks},
                               value=value)
