"""The verifier's result-signing key, and the verifier keys a host trusts.

The signing key is an ECDSA P-256 key in the verifier's home, ``$ATTEST_HOME/ear/
result-signing.key`` (PKCS#8 PEM, 0600, its folder 0700), made on the first `attest
serve`. Whoever reads it can sign results that make every host run anything: it is
refused when it is a symbolic link, not this user's, or readable by group or others.
Replicas behind one load balancer share it (docs/deploy.md).

A host trusts the public keys in the files ``--verifier-key`` names, else every
``*.pem`` in ``$ATTEST_HOME/verifier-keys/``: `attest result key` prints one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.durable import fsync_dir
from attest.errors import UsageError
from attest.inputfile import read_bounded

FOLDER = "ear"
PRIVATE_FILE = "result-signing.key"
TRUSTED_FOLDER = "verifier-keys"
MAX_KEY_FILE = 16 * 1024


def key_path(home: Path) -> Path:
    return home / FOLDER / PRIVATE_FILE


def load_or_create(home: Path) -> ec.EllipticCurvePrivateKey:
    """The result-signing key of the verifier ``home``, generated on first use. Two
    processes starting at once end up with the same key (link() admits one)."""
    folder = home / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(folder, "the result key folder", os.lstat(folder), dir_ok=True)
    path = folder / PRIVATE_FILE
    if not path.exists():
        _create(folder, path)
    return load(home)


def load(home: Path) -> ec.EllipticCurvePrivateKey:
    path = key_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:  # missing, a symbolic link (ELOOP), unreadable
        raise UsageError(f"the result-signing key {path} cannot be read: {exc.strerror}",
                         hint="`attest serve` creates it in the verifier's home") from None
    with os.fdopen(fd, "rb") as source:
        # The file opened, not the name: it may have been replaced since.
        _check_private(path, "the result-signing key", os.fstat(fd), dir_ok=False)
        data = source.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise UsageError(f"{path} is larger than {MAX_KEY_FILE} bytes")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                          ec.SECP256R1):
        raise UsageError(f"{path} is not an ECDSA P-256 key")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in the PEM file ``path`` (UsageError otherwise)."""
    data = read_bounded(path, "the verifier key", MAX_KEY_FILE)  # a FIFO never blocks it
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not a PEM public key",
                         hint="`attest result key` on the verifier prints one") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                         ec.SECP256R1):
        raise UsageError(f"the verifier key {path} is not an ECDSA P-256 key")
    return key


def trusted(home: Path, given: tuple[Path, ...] = ()) -> list[ec.EllipticCurvePublicKey]:
    """The verifier keys a host trusts: ``given``, else ``home/verifier-keys/*.pem``.
    UsageError when there is none: a host that trusts no key can't run anything."""
    paths = list(given) or sorted((home / TRUSTED_FOLDER).glob("*.pem"))
    if not paths:
        raise UsageError("no verifier key is trusted: a verifier's answer can't be checked",
                         hint=f"pass --verifier-key PEM (`attest result key` on the "
                         f"verifier prints it), or put it in {home / TRUSTED_FOLDER}/")
    return [load_public(path) for path in paths]


def _check_private(path: Path, what: str, info: os.stat_result, *, dir_ok: bool) -> None:
    if stat.S_ISLNK(info.st_mode) or (stat.S_ISDIR(info.st_mode) and not dir_ok):
        raise UsageError(f"{what} {path} is a symbolic link or a folder",
                         hint="use the real path")
    if info.st_uid != os.geteuid():
        raise UsageError(f"{what} {path} belongs to uid {info.st_uid}, not to this user",
                         hint="the verifier's user must own its result key")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{what} {path} is open to others (mode {info.st_mode & 0o777:o})",
                         hint=f"chmod {'700' if dir_ok else '600'} {path}")


def _create(folder: Path, path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".result-key.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # the first creator wins
            os.link(temp, path)
    finally:
        os.unlink(temp)
    fsync_dir(folder)
