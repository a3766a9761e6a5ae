"""EK certificates as real TPMs store them, and their chains to manufacturer roots.

Quirks handled here (see ../shared/vectors/ekcerts): NV copies padded with 0xFF
after the DER; the TCG profile's empty subject with a critical SAN directory
name; newer profiles without SAN or EKU; roots in non-DER encodings that
`cryptography` refuses and OpenSSL reads. Chains are validated with OpenSSL
(pyOpenSSL) at a time the caller passes in.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from attest.errors import EvidenceError
from attest.evidence.signatures import PublicKey
from attest.reasons import Reason

if TYPE_CHECKING:
    # Imported where used: pyOpenSSL costs ~6 ms to import, and only chains and
    # certificates `cryptography` refuses need it (not `attest run`).
    from OpenSSL import crypto

# TCG EK Credential Profile: SAN directory-name attributes and the EK certificate EKU.
OID_TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
OID_TPM_MODEL = x509.ObjectIdentifier("2.23.133.2.2")
OID_TPM_VERSION = x509.ObjectIdentifier("2.23.133.2.3")
OID_EK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.1")

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL
)
_MAX_CERT_BYTES = 1 << 20
# What `cryptography` raises on a certificate it cannot read, at load time or lazily when a
# field is first accessed (public_key(), extensions, dates): InvalidVersion,
# UnsupportedAlgorithm (curve or key OID), DuplicateExtension, UnsupportedGeneralNameType
# and ValueError (bad ASN.1, a bad IP address in a SAN) are all Exceptions, TypeError too.
_UNREADABLE: tuple[type[Exception], ...] = (
    ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType, UnsupportedAlgorithm,
)
CRYPTOGRAPHY_REFUSALS = _UNREADABLE  # for display code with an OpenSSL fallback of its own


def _said(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:120]}"


@dataclass(frozen=True)
class TPMIdentity:
    """The TCG SAN directory name: who made the TPM."""

    manufacturer: str | None
    model: str | None
    version: str | None


@dataclass(frozen=True)
class EKCertificate:
    """An EK certificate and what its profile says. ``trimmed``: padding bytes dropped."""

    der: bytes
    trimmed: int
    public_key: PublicKey
    not_before: datetime
    not_after: datetime
    subject_empty: bool
    tpm: TPMIdentity | None  # None when there is no TCG SAN (newer profiles)
    san_critical: bool
    ek_eku: bool  # EKU 2.23.133.8.1 present
    parsed_by: str  # "cryptography", or "openssl" for encodings cryptography refuses


@dataclass(frozen=True)
class VerifiedChain:
    leaf: EKCertificate
    chain: tuple[bytes, ...]  # DER, leaf first, trust anchor last


def ek_id(key: PublicKey) -> str:
    """A TPM's identity as the verifier's store records it: SHA-256 (hex) of the EK's
    SubjectPublicKeyInfo, the same whether the key came from a certificate or the TPM."""
    from cryptography.hazmat.primitives import serialization

    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _refuse(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.EK_CHAIN_INVALID)


def der_length(data: bytes) -> int:
    """Length of the outer DER TLV (a SEQUENCE) at the start of ``data``."""
    if len(data) < 2 or data[0] != 0x30:
        raise _refuse("not a DER certificate (no outer SEQUENCE)")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        raise _refuse("certificate has an unusable DER length")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def trim_der(data: bytes) -> tuple[bytes, int]:
    """Drop the 0xFF (or 0x00) fill NV leaves after a certificate; refuse other trailing data."""
    total = der_length(data)
    if total > len(data):
        raise _refuse(f"certificate truncated: DER says {total} bytes, {len(data)} present")
    rest = data[total:]
    if rest.strip(b"\xff") and rest.strip(b"\x00"):
        raise _refuse(f"{len(rest)} bytes after the certificate are not fill bytes")
    return data[:total], len(rest)


def split_certificates(data: bytes) -> list[bytes]:
    """DER certificates in ``data``: PEM (one or several blocks) or a single DER."""
    if len(data) > _MAX_CERT_BYTES:
        raise _refuse("certificate input larger than 1 MiB")
    if b"-----BEGIN" in data:
        blocks = _PEM_BLOCK.findall(data)
        if not blocks:
            raise _refuse("PEM input holds no CERTIFICATE block")
        return [_pem_to_der(block) for block in blocks]
    return [trim_der(data)[0]]


def _pem_to_der(block: bytes) -> bytes:
    from OpenSSL import crypto

    try:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, block)
    except crypto.Error as exc:
        raise _refuse(f"unreadable PEM certificate: {exc}") from None
    return crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)


def _openssl(der: bytes) -> crypto.X509:
    from OpenSSL import crypto

    try:
        return crypto.load_certificate(crypto.FILETYPE_ASN1, der)
    except crypto.Error as exc:
        raise _refuse(f"OpenSSL cannot read the certificate: {exc}") from None


def parse_ek_certificate(data: bytes) -> EKCertificate:
    """Parse an EK certificate (PEM, DER, or DER with NV fill); raises ek_chain_invalid."""
    from OpenSSL import crypto

    try:
        return _parse_ek_certificate(data)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType, crypto.Error) as exc:
        # cryptography parses lazily: a malformed key, extension or time surfaces only
        # when read, as one of these (found by tests/fuzz).
        raise _refuse(f"unreadable certificate: {type(exc).__name__}: {exc}"[:400]) from None


def _parse_ek_certificate(data: bytes) -> EKCertificate:
    if b"-----BEGIN" in data:
        ders = split_certificates(data)
        if len(ders) != 1:
            raise _refuse(f"expected one EK certificate, found {len(ders)}")
        der, trimmed = ders[0], 0
    else:
        der, trimmed = trim_der(data)
    try:
        return _parse_with_cryptography(der, trimmed)
    except EvidenceError:
        raise
    except x509.DuplicateExtension as exc:
        # RFC 5280 4.2: an extension appears at most once. Two SANs are two answers to
        # which TPM this is, and parsers differ on which one counts: never a fallback.
        raise _refuse(f"unreadable certificate: DuplicateExtension: {exc}"[:400]) from None
    except _UNREADABLE:
        # `cryptography` refuses this encoding (or raises lazily on a field): OpenSSL may read it.
        return _parse_with_openssl(der, trimmed)


def _parse_with_cryptography(der: bytes, trimmed: int) -> EKCertificate:
    with warnings.catch_warnings():
        # A negative serial or an odd attribute length is reported by the chain check.
        warnings.simplefilter("ignore")
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise _refuse("EK certificate key is neither RSA nor ECC")
        tpm, critical = _tcg_san(cert)
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            ek_eku = OID_EK_CERTIFICATE in list(eku)
        except x509.ExtensionNotFound:
            ek_eku = False
        return EKCertificate(
            der=der,
            trimmed=trimmed,
            public_key=key,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            subject_empty=len(cert.subject) == 0,
            tpm=tpm,
            san_critical=critical,
            ek_eku=ek_eku,
            parsed_by="cryptography",
        )


def _tcg_san(cert: x509.Certificate) -> tuple[TPMIdentity | None, bool]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return None, False
    assert isinstance(ext.value, x509.SubjectAlternativeName)  # noqa: S101 (narrowing)
    for name in ext.value.get_values_for_type(x509.DirectoryName):
        fields = {
            attr.oid: str(attr.value) for attr in name if not isinstance(attr.value, bytes)
        }
        if OID_TPM_MANUFACTURER in fields:
            return TPMIdentity(
                fields.get(OID_TPM_MANUFACTURER),
                fields.get(OID_TPM_MODEL),
                fields.get(OID_TPM_VERSION),
            ), ext.critical
    return None, ext.critical


def _parse_with_openssl(der: bytes, trimmed: int) -> EKCertificate:
    """Fallback for encodings `cryptography` refuses: key and dates only."""
    from OpenSSL import crypto

    cert = _openssl(der)
    unreadable: tuple[type[Exception], ...] = (crypto.Error, *_UNREADABLE)
    try:
        key = cert.get_pubkey().to_cryptography_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise _refuse("EK certificate key is neither RSA nor ECC")
        return EKCertificate(
            der=der,
            trimmed=trimmed,
            public_key=key,
            not_before=_asn1_time(cert.get_notBefore()),
            not_after=_asn1_time(cert.get_notAfter()),
            subject_empty=_openssl_subject_empty(cert),
            tpm=None,
            san_critical=False,
            ek_eku=False,
            parsed_by="openssl",
        )
    except unreadable as exc:
        # OpenSSL, too, reads some fields only when asked (the key, the dates).
        raise _refuse(f"unreadable EK certificate: {_said(exc)}") from None


def _openssl_subject_empty(cert: crypto.X509) -> bool:
    # pyOpenSSL deprecates X509Name in favour of `cryptography`, which cannot read this cert
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return not cert.get_subject().get_components()


def _asn1_time(value: bytes | None) -> datetime:
    if value is None:
        raise _refuse("certificate without validity dates")
    try:
        return datetime.strptime(value.decode("ascii"), "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:  # UnicodeDecodeError too
        raise _refuse(f"unreadable validity date {value[:32]!r}") from None


def verify_chain(
    leaf: bytes,
    roots: Iterable[bytes],
    intermediates: Iterable[bytes] = (),
    *,
    at: datetime,
    reason: Reason = Reason.EK_CHAIN_INVALID,
) -> VerifiedChain:
    """Validate ``leaf`` to one of ``roots`` at time ``at``; raise EvidenceError(reason).

    Every certificate in ``roots`` is a trust anchor, self-signed or not (an
    intermediate placed among the roots is trusted as one, like a roots
    directory would be); ``intermediates`` are only used to build the path.
    Each item may be PEM (several blocks allowed) or DER.
    """
    from OpenSSL import crypto

    if at.tzinfo is None:
        raise ValueError("verification time must be timezone-aware")
    try:
        ek = parse_ek_certificate(leaf)
        store = crypto.X509Store()
        store.set_time(at.astimezone(UTC))
        # A root need not be self-signed (STM's ECC root is itself cross-signed).
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        anchors = 0
        for item in roots:
            for der in split_certificates(item):
                store.add_cert(_openssl(der))
                anchors += 1
        if not anchors:
            raise _refuse("no trust anchors given")
        chain = [_openssl(der) for item in intermediates for der in split_certificates(item)]
        context = crypto.X509StoreContext(store, _openssl(ek.der), chain=chain)
        verified = context.get_verified_chain()
    except crypto.X509StoreContextError as exc:
        raise EvidenceError(f"certificate chain invalid: {exc}", reason=reason) from None
    except crypto.Error as exc:
        # A root or intermediate OpenSSL parsed but cannot use (a key it cannot decode).
        raise EvidenceError(f"unusable certificate: {_said(exc)}", reason=reason) from None
    except EvidenceError as exc:
        raise EvidenceError(exc.message, reason=reason, hint=exc.hint) from None
    return VerifiedChain(
        ek, tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in verified)
    )


def verify_ek_certificate(
    leaf: bytes,
    roots: Iterable[bytes],
    intermediates: Iterable[bytes] = (),
    *,
    at: datetime,
) -> VerifiedChain:
    """:func:`verify_chain` for an EK certificate: the chain holds AND the leaf is one.

    A CA or TLS certificate issued under an EK root chains as well as an EK
    certificate does; :func:`attest.evidence.ekprofile.check_ek_profile` refuses it.
    Raises EvidenceError(ek_chain_invalid).
    """
    from attest.evidence.ekprofile import check_ek_profile

    verified = verify_chain(leaf, roots, intermediates, at=at)
    check_ek_profile(verified.leaf.der)
    return verified
