"""TLS for `attest serve`: the certificate and key files checked before uvicorn reads them.

uvicorn loads ``--tls-cert``/``--tls-key`` itself, in every worker, and fails with a
traceback on a file that doesn't parse or a key that isn't the certificate's. So the
command reads them first, and refuses, naming the file: a key file open to group or
others (whoever reads it can pose as the service: read the artifacts hosts send, answer
in its place; its results still need the result key), a file that is no PEM
certificate or unencrypted PEM private key, a key that isn't the certificate's.

The server's ciphers are chosen here too: uvicorn's default (OpenSSL's "TLSv1" list)
offers CBC with SHA-1 and anonymous suites under TLS 1.2. With :data:`CIPHERS`, TLS 1.2
is ECDHE with an AEAD only (forward secrecy, no padding oracles); TLS 1.3's suites are
all of that kind and are not affected by the list. Python's server context refuses
anything older than TLS 1.2.
"""

from __future__ import annotations

import datetime
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from attest.errors import UsageError

CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# A chain of a few certificates, a key: kilobytes. A larger file is no TLS file.
MAX_PEM_BYTES = 1 << 20


class UvicornTls(TypedDict):
    """uvicorn.run's TLS arguments."""

    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_ciphers: str


@dataclass(frozen=True)
class TlsFiles:
    """A certificate chain and its key, checked; what uvicorn is given."""

    cert: Path
    key: Path
    # The leaf certificate's validity, for the start-up line's warning.
    not_after: datetime.datetime

    def expired(self, now: datetime.datetime) -> bool:
        return now >= self.not_after


def uvicorn_tls(tls: TlsFiles | None) -> UvicornTls:
    """What uvicorn is given: the files' paths (each worker reads them again) and the
    ciphers; no files, plain http."""
    if tls is None:
        return UvicornTls(ssl_certfile=None, ssl_keyfile=None, ssl_ciphers=CIPHERS)
    return UvicornTls(ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key),
                      ssl_ciphers=CIPHERS)


def check(cert: Path, key: Path) -> TlsFiles:
    """The files, or :class:`UsageError` naming the one at fault (exit 2)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    key_pem = _read(key, "--tls-key", private=True)
    try:
        chain = x509.load_pem_x509_certificates(_read(cert, "--tls-cert"))
    except ValueError as exc:
        raise UsageError(f"--tls-cert {cert}: not a PEM certificate ({exc})",
                         hint="the server's certificate first, then its intermediates, "
                         "each -----BEGIN CERTIFICATE-----") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        # TypeError is what `cryptography` raises for an encrypted key without a password.
        raise UsageError(f"--tls-key {key}: the key is encrypted; the service reads it "
                         "unattended", hint=f"decrypt it into a file of mode 600: "
                         f"openssl pkey -in {key} -out KEY") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"--tls-key {key}: not a PEM private key ({exc})") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise UsageError(f"--tls-key {key} is not the key of --tls-cert {cert} (its first "
                         "certificate)", hint="give the certificate and the key made with it")
    try:
        # What uvicorn will do in each worker: OpenSSL may still refuse what parsed above
        # (a key type or size below its security level).
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"--tls-cert {cert} with --tls-key {key}: OpenSSL refuses them "
                         f"({exc})") from None
    return TlsFiles(cert, key, chain[0].not_valid_after_utc)


def _read(path: Path, option: str, *, private: bool = False) -> bytes:
    """The file's bytes, bounded. ``private``: refused when group or others may read or
    write it. The file opened is the one checked (fstat); a symbolic link is followed,
    as certbot's are; O_NONBLOCK so that a FIFO named here can't hang the start."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{option} {path} is not a regular file")
        if private and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(f"{option} {path} is open to group or others (mode "
                             f"{stat.S_IMODE(info.st_mode):o}): whoever reads it can pose as "
                             "this service to hosts",
                             hint=f"chmod 600 {path} (a copy owned by the service's user)")
        data = source.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise UsageError(f"{option} {path} is larger than {MAX_PEM_BYTES} bytes")
    return data
