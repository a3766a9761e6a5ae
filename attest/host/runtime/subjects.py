"""What a measurement is of: a file, a command about to run, a named piece of data.

Each builder returns the record content (see attest.eventlog.cel): its type, a
name a reference value can match, the digests of what was measured, and the
details a reader needs (path, size).

The runtime log travels inside every later artifact to every verifier, so it
keeps no secrets by default: a command record carries the digest of its argv
(``argv_digest``), a data record only the digest of its value; the values
themselves only when the caller asks (``record_argv`` / ``record_value``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attest.errors import UsageError
from attest.eventlog.cel import (
    CelRecord,
    canonical_json,
    is_command,
    measurement_content,
)
from attest.streamdigest import stream_digests


def file_digests(path: Path, banks: Sequence[str]) -> dict[str, bytes]:
    """Digests of a file's bytes, read once in chunks (large files cost no memory)."""
    with open(path, "rb") as handle:
        return stream_digests(handle, banks, f"hashing {path}")[0]


def _regular_file(path: Path) -> Path:
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # a symbolic link loop (RuntimeError before 3.13)
        raise UsageError(f"cannot resolve {path}: a loop of symbolic links") from None
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


def argv_digests(argv: Sequence[str], banks: Sequence[str]) -> dict[str, str]:
    """Digests of the argument vector as canonical JSON (a list of strings), by bank, hex.

    A list, not the joined text: ``["a b"]`` and ``["a", "b"]`` differ.
    """
    encoded = canonical_json(list(argv))
    return {bank: hashlib.new(bank, encoded).hexdigest() for bank in banks}


def command_content(argv: Sequence[str], banks: Sequence[str], *, record_argv: bool = False,
                    executable: Path | None = None,
                    measured: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """The executable's digest and the argument vector's digest: what is about to run.

    ``executable`` and ``measured`` are the resolved file and its digests when the
    caller hashed it itself (``attest run`` hashes the sealed copy it will exec);
    the argv values go into the record only with ``record_argv``.
    """
    if not argv:
        raise UsageError("no command given", hint="write: attest measure command -- CMD ARGS...")
    if executable is None:
        executable = resolve_executable(argv[0])
    if measured is None:
        # SHA-256 always: artifacts and the policy's executables name executables by it.
        measured = file_digests(executable, sorted({*banks, "sha256"}))
    details: dict[str, Any] = {"path": str(executable), "argv_digest": argv_digests(argv, banks)}
    if record_argv:
        details["argv"] = list(argv)
    return measurement_content("command", str(executable), measured, **details)


def data_content(name: str, value: str, banks: Sequence[str], *,
                 record_value: bool = False) -> dict[str, Any]:
    """A named value's digest; the value itself only with ``record_value``."""
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes from argv that are not UTF-8: the log is JSON text and cannot keep them.
        raise UsageError("the value to measure is not UTF-8 text",
                         hint="measure a file holding those bytes instead "
                              "(attest measure file)") from None
    details: dict[str, Any] = {"value": value} if record_value else {}
    return measurement_content("data", name,
                               {bank: hashlib.new(bank, encoded).digest() for bank in banks},
                               **details)


def measured_executables(records: Iterable[CelRecord]) -> dict[str, list[bytes]]:
    """The executables a runtime log measured as commands: path -> SHA-256 digests,
    in log order (what `policy init --from-host` allows as ``executables``)."""
    found: dict[str, list[bytes]] = {}
    for record in records:
        if not is_command(record):
            continue
        name, measured = record.content.get("name"), record.content.get("digest")
        if not isinstance(name, str) or not isinstance(measured, dict):
            continue
        digest = measured.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            value = bytes.fromhex(digest)
            if value not in found.setdefault(name, []):
                found[name].append(value)
    return found
