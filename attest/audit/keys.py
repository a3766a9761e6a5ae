"""The log key and the last head it signed, in the verifier's key folder.

The folder is ``$ATTEST_AUDIT_DIR`` if set, else ``$ATTEST_HOME/audit`` (mode 0700). It
holds ``audit-log.key``, the private key (0600); ``audit-log.pub``, the verifier key an
auditor needs, which is no secret; and ``last-head``, the latest tree head this key
signed (0600). The last head lives here, beside the key, and not in the database: it is
what lets the signer refuse to sign a tree that does not extend it, when whoever can
write the database truncates the log and deletes its heads.

The key is the verifier's alone. It is refused when its file or folder is a symbolic
link, not owned by the user running attest, readable by others (the key) or writable by
others (the folder), or when the folder is a host's (its home, where the host identity
lives, or anything under its TPM keys): a host user who can write the key can sign any
log. Creation is atomic: two processes starting at once end up with the same key.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path

from attest.audit import lasthead
from attest.audit.lasthead import LastHead
from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
from attest.durable import fsync_dir
from attest.errors import UsageError
from attest.inputfile import MAX_KEY_BYTES, read_home_file

FOLDER = "audit"
PRIVATE_FILE = "audit-log.key"
PUBLIC_FILE = "audit-log.pub"
LAST_HEAD_FILE = lasthead.FILE
LAST_HEAD_LOCK = lasthead.LOCK
# The log key file of attest before the key had a folder of its own (in the host's home).
LEGACY_FILE = PRIVATE_FILE
MAX_KEY_FILE = 4096


def default_name() -> str:
    """``<hostname>/attest-audit``: names the log in every checkpoint (its origin)."""
    host = "".join(c for c in socket.gethostname()
                   if c.isprintable() and not c.isspace() and c != "+")
    return f"{host or 'localhost'}/attest-audit"


def key_dir(home: Path) -> Path:
    """The verifier's key folder: ``$ATTEST_AUDIT_DIR``, else ``home/audit``."""
    chosen = os.environ.get("ATTEST_AUDIT_DIR")
    return Path(chosen) if chosen else home / FOLDER


def exists(home: Path) -> bool:
    return (key_dir(home) / PRIVATE_FILE).exists()


def load_or_create(home: Path, name: str | None = None) -> NoteSigner:
    """The log key of ``home``, generated under ``name`` (or :func:`default_name`) if absent."""
    folder = _folder(home, create=True)
    path = folder / PRIVATE_FILE
    if not path.exists():
        _create(folder, NoteSigner.generate(name or default_name()))
    signer = _load(folder)
    if name is not None and signer.name != name:
        raise UsageError(f"the log key in {path} is named {signer.name!r}, not {name!r}",
                         hint="a log keeps the name it was created with")
    return signer


def load(home: Path) -> NoteSigner:
    return _load(_folder(home, create=False))


def load_own(home: Path) -> NoteSigner | None:
    """The log key, when this user holds it (the verifier's user); None for an auditor who
    cannot reach it or runs as someone else. A key this user owns but keeps unsafely is
    refused as :func:`load` refuses it."""
    try:
        owner = (key_dir(home) / PRIVATE_FILE).stat().st_uid
    except OSError:  # no key, or a folder closed to this user: not where the key is
        return None
    return load(home) if owner == os.geteuid() else None


def load_public(home: Path) -> VerifierKey | None:
    """The verifier key beside the log key, or None when this home has no log key."""
    folder = key_dir(home)
    path = folder / PUBLIC_FILE
    if path.exists():
        return VerifierKey.parse(read_home_file(path, "verifier key", MAX_KEY_BYTES)
                                 .decode("utf-8", "replace"))
    if (folder / PRIVATE_FILE).exists():
        return load(home).verifier_key
    return None


def last_head(home: Path, key: VerifierKey) -> Checkpoint | None:
    """The last tree head the log key signed, or None before its first (attest.audit.lasthead)."""
    return LastHead(key_dir(home), key).current()


def last_head_note(home: Path) -> str | None:
    """The signed note of :func:`last_head`, for an audit to hold the log to.

    Read by an auditor who may be another user than the verifier's: the note is
    checked with the verifier key where it is used, so its owner does not matter here.
    """
    try:
        return LastHead(key_dir(home), None).note()
    except OSError as exc:
        raise UsageError(f"the last signed head in {key_dir(home)} cannot be read: "
                         f"{exc.strerror}", hint="pass --trusted-head, or run as the "
                         "verifier's user") from None


def save_last_head(home: Path, note: str, key: VerifierKey | None = None) -> None:
    """Record ``note`` as the last signed head, durably (0600; attest.audit.lasthead).

    With ``key``, only by a larger head: replicas sharing the key folder (several
    processes of `attest serve` on one machine) record their heads after their commits,
    in whatever order their threads run, and the file must not go back to an older one
    (a truncation to it would then pass). The read and the write hold an exclusive lock
    on a file beside it, so two recorders do not both find themselves the larger.
    """
    LastHead(key_dir(home), key).record(note)


def last_head_record(home: Path, key: VerifierKey) -> LastHead:
    """The record of the last head for a process that signs with ``key``: it remembers
    the head it last wrote or verified, and verifies the file again only when it changed."""
    return LastHead(key_dir(home), key)


# -- the folder and its files -----------------------------------------------------------


def _folder(home: Path, *, create: bool) -> Path:
    folder = key_dir(home)
    _refuse_host_folder(folder, home)
    if create and not folder.exists():
        if (home / LEGACY_FILE).exists() and "ATTEST_AUDIT_DIR" not in os.environ:
            raise UsageError(
                f"the log key is in the host's home ({home / LEGACY_FILE}); it now lives in "
                f"a folder of its own", hint=f"mkdir -m 700 {folder} && mv "
                f"{home / PRIVATE_FILE} {home / PUBLIC_FILE} {folder}/")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_owned(folder, "the log key folder", others_may_read=True)
    return folder


def _refuse_host_folder(folder: Path, home: Path) -> None:
    """A host's home holds its identity, and ``keys/`` its TPM keys: not a verifier's key."""
    resolved, host = folder.resolve(), home.resolve()
    if resolved == host or resolved.is_relative_to(host / "keys"):
        raise UsageError(f"the log key folder {folder} is the host's ({host}): the log key "
                         "must be the verifier's alone",
                         hint="set ATTEST_AUDIT_DIR to a folder of the verifier's")


def _check_owned(path: Path, what: str, *, others_may_read: bool,
                 info: os.stat_result | None = None) -> None:
    info = path.lstat() if info is None else info
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(f"{what} {path} is a symbolic link", hint="use the real path")
    if info.st_uid != os.geteuid():
        raise UsageError(f"{what} {path} belongs to uid {info.st_uid}, not to this user",
                         hint="the verifier's user must own its log key")
    unwanted = (stat.S_IWGRP | stat.S_IWOTH) if others_may_read else (stat.S_IRWXG
                                                                       | stat.S_IRWXO)
    if info.st_mode & unwanted:
        raise UsageError(f"{what} {path} is open to others (mode {info.st_mode & 0o777:o})",
                         hint=f"chmod {'700' if others_may_read else '600'} {path}")


def _read_private(path: Path, limit: int) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        # The file opened, not the name: it may have been replaced since.
        _check_owned(path, "the file", others_may_read=False, info=os.fstat(fd))
        data = source.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path} is larger than {limit} bytes")
    return data.decode("utf-8", errors="replace")


def _load(folder: Path) -> NoteSigner:
    path = folder / PRIVATE_FILE
    try:
        text = _read_private(path, MAX_KEY_FILE)
    except OSError as exc:  # a symbolic link (ELOOP), unreadable, ...
        raise UsageError(f"the log key {path} cannot be read: {exc.strerror}") from None
    return NoteSigner.decode_private(text)


def _create(folder: Path, signer: NoteSigner) -> None:
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".audit-log.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(signer.encode_private() + "\n")
            out.flush()
            os.fsync(out.fileno())
        # link() fails if the name exists: the first creator wins, the others read its key.
        with contextlib.suppress(FileExistsError):
            os.link(temp, folder / PRIVATE_FILE)
            _write_public(folder, signer.verifier_key)
    finally:
        os.unlink(temp)
    fsync_dir(folder)


def _write_public(folder: Path, key: VerifierKey) -> None:
    partial = folder / f".{PUBLIC_FILE}.tmp"
    partial.write_text(key.encode() + "\n")
    partial.chmod(0o644)
    os.replace(partial, folder / PUBLIC_FILE)  # readers see the whole key or none
