"""The log key in ``$ATTEST_HOME``: created on first use, readable by its owner only.

``audit-log.key`` holds the private key (mode 0600); ``audit-log.pub`` the verifier
key an auditor needs, which is no secret. Creation is atomic: two processes starting
at once end up with the same key, never two.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path

from attest.audit.note import NoteSigner, VerifierKey
from attest.errors import UsageError

PRIVATE_FILE = "audit-log.key"
PUBLIC_FILE = "audit-log.pub"


def default_name() -> str:
    """``<hostname>/attest-audit``: names the log in every checkpoint (its origin)."""
    host = "".join(c for c in socket.gethostname() if not c.isspace() and c != "+")
    return f"{host or 'localhost'}/attest-audit"


def exists(home: Path) -> bool:
    return (home / PRIVATE_FILE).exists()


def load_or_create(home: Path, name: str | None = None) -> NoteSigner:
    """The log key of ``home``, generated under ``name`` (or :func:`default_name`) if absent."""
    path = home / PRIVATE_FILE
    if not path.exists():
        _create(home, NoteSigner.generate(name or default_name()))
    signer = load(home)
    if name is not None and signer.name != name:
        raise UsageError(f"the log key in {path} is named {signer.name!r}, not {name!r}",
                         hint="a log keeps the name it was created with")
    return signer


def load(home: Path) -> NoteSigner:
    path = home / PRIVATE_FILE
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"the log key {path} is readable by others (mode {mode & 0o777:o})",
                         hint=f"chmod 600 {path}")
    return NoteSigner.decode_private(path.read_text())


def load_public(home: Path) -> VerifierKey | None:
    """The verifier key beside the log key, or None when this home has no log key."""
    path = home / PUBLIC_FILE
    if path.exists():
        return VerifierKey.parse(path.read_text())
    if (home / PRIVATE_FILE).exists():
        return load(home).verifier_key
    return None


def _create(home: Path, signer: NoteSigner) -> None:
    home.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=home, prefix=".audit-log.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(signer.encode_private() + "\n")
            out.flush()
            os.fsync(out.fileno())
        # link() fails if the name exists: the first creator wins, the others read its key.
        with contextlib.suppress(FileExistsError):
            os.link(temp, home / PRIVATE_FILE)
            _write_public(home, signer.verifier_key)
    finally:
        os.unlink(temp)


def _write_public(home: Path, key: VerifierKey) -> None:
    partial = home / f".{PUBLIC_FILE}.tmp"
    partial.write_text(key.encode() + "\n")
    partial.chmod(0o644)
    os.replace(partial, home / PUBLIC_FILE)  # readers see the whole key or none
