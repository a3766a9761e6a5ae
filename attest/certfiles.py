"""Reading certificate files and folders (EK roots, chains) as the commands name them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from attest.errors import UsageError
from attest.inputfile import MAX_CERT_BYTES, read_bounded

CERT_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})


def certificate_files(path: Path) -> list[Path]:
    """``path`` itself, or the certificate files of a folder.

    A CA folder (swtpm's, for one) keeps private keys and counters beside its
    certificates: PEM files without a CERTIFICATE block are skipped.
    """
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.iterdir()
                   if p.is_file() and p.suffix.lower() in CERT_SUFFIXES
                   and (b"-----BEGIN" not in (head := _read(p))
                        or b"CERTIFICATE-----" in head))
    if not found:
        raise UsageError(f"no certificates (*.pem, *.crt, *.cer, *.der) in {path}")
    return found


def read_certificates(paths: Iterable[Path]) -> list[bytes]:
    """The bytes of every certificate file named by ``paths`` (files or folders)."""
    out: list[bytes] = []
    for path in paths:
        out.extend(_read(file) for file in certificate_files(path))
    return out


def _read(file: Path) -> bytes:
    # A root bundle is a few certificates; a device or FIFO named as one is not read whole.
    return read_bounded(file, "certificate", MAX_CERT_BYTES)
