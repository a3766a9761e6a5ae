"""Certificates made on the spot under a test CA: EK certificates and the things that must
not pass as one (TLS server and client certificates, CAs, unmarked certificates)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EK_EKU = x509.ObjectIdentifier("2.23.133.8.1")
TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
TPM_MODEL = x509.ObjectIdentifier("2.23.133.2.2")
TPM_VERSION = x509.ObjectIdentifier("2.23.133.2.3")
NOW = datetime.datetime.now(datetime.UTC)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def _usage(*, encipher: bool = False, agree: bool = False, sign: bool = False,
           cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=encipher, data_encipherment=False,
                         key_agreement=agree, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


@dataclass
class EKRootCA:
    """A self-signed root that issues leaves; ``pem`` is its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "test EK root") -> EKRootCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1))
                .not_valid_after(NOW + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(_usage(cert_sign=True), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "root.pem"
        path.write_bytes(self.pem)
        return path

    def issue(self, key: PublicKey, extensions: Sequence[tuple[x509.ExtensionType, bool]],
              subject: str | None = None) -> bytes:
        """A leaf over ``key`` with ``extensions`` ((value, critical) pairs), DER."""
        name = x509.Name([] if subject is None
                         else [x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(self.cert.subject).public_key(key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - datetime.timedelta(days=1))
                   .not_valid_after(NOW + datetime.timedelta(days=30)))
        for value, critical in extensions:
            builder = builder.add_extension(value, critical=critical)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ek_certificate(self, key: PublicKey) -> bytes:
        """What a TPM manufacturer issues: empty subject, critical TPM SAN, EK EKU."""
        san = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
            x509.RelativeDistinguishedName([
                x509.NameAttribute(TPM_MANUFACTURER, "id:54455354"),
                x509.NameAttribute(TPM_MODEL, "test"),
                x509.NameAttribute(TPM_VERSION, "id:00010002")])]))])
        usage = _usage(encipher=isinstance(key, rsa.RSAPublicKey),
                       agree=isinstance(key, ec.EllipticCurvePublicKey))
        return self.issue(key, [(x509.BasicConstraints(ca=False, path_length=None), True),
                                (usage, True), (san, True),
                                (x509.ExtendedKeyUsage([EK_EKU]), False)])

    def tls_server_certificate(self, key: PublicKey, name: str = "www.example.test") -> bytes:
        """A web server's certificate: serverAuth, signature and key encipherment."""
        return self.issue(key, [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_usage(sign=True, encipher=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectAlternativeName([x509.DNSName(name)]), False)], subject=name)

    def tls_client_certificate(self, key: PublicKey) -> bytes:
        """clientAuth only, and a key usage that looks like an EK's: still not an EK."""
        return self.issue(key, [
            (_usage(encipher=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)], subject="c")

    def ca_certificate(self, key: PublicKey) -> bytes:
        """A subordinate CA over ``key``, with the EK EKU some vendors put on their CAs."""
        return self.issue(key, [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_usage(cert_sign=True), True),
            (x509.ExtendedKeyUsage([EK_EKU]), False)], subject="sub CA")


def rsa_key() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(65537, 2048).public_key()
