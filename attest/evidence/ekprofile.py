"""What makes a certificate an EK certificate (TCG EK Credential Profile), checked on DER.

A chain to an EK root proves who issued a certificate, not what for: a CA in a
roots folder may also issue TLS certificates, intermediates, or other TPM
credentials. An EK certificate is the end entity of a TPM's decryption key, so:

- it is not a CA (basicConstraints cA absent or false; no keyCertSign/cRLSign);
- an extendedKeyUsage, when present, includes the EK certificate purpose
  2.23.133.8.1 (TLS-only serverAuth/clientAuth certificates do not);
- it carries a mark of the profile: the EK EKU, the TPM manufacturer attribute
  (2.23.133.2.1) in its subjectAltName, the TPM specification attribute
  (2.23.133.2.16) in subjectDirectoryAttributes, or, for profiles that carry
  none of those (GCE's CA Service EKs), a keyUsage limited to key transport or
  agreement: an EK decrypts and never signs.

The extensions are read from the DER itself rather than through `cryptography`,
because real EK certificates (Nuvoton's) use encodings it refuses while OpenSSL
reads them: one reader serves both. The certificate was parsed by OpenSSL or
`cryptography` before it gets here; this reader is still bounded and strict.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.errors import EvidenceError
from attest.reasons import Reason

OID_EK_CERTIFICATE = "2.23.133.8.1"
OID_TPM_MANUFACTURER = "2.23.133.2.1"
OID_TPM_SPECIFICATION = "2.23.133.2.16"
OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
_BASIC_CONSTRAINTS = "2.5.29.19"
_KEY_USAGE = "2.5.29.15"
_EXTENDED_KEY_USAGE = "2.5.29.37"
_SUBJECT_ALT_NAME = "2.5.29.17"
_SUBJECT_DIRECTORY_ATTRIBUTES = "2.5.29.9"

# keyUsage bits (RFC 5280, 4.2.1.3), numbered from the first bit of the BIT STRING.
DIGITAL_SIGNATURE, NON_REPUDIATION, KEY_ENCIPHERMENT, DATA_ENCIPHERMENT = 0, 1, 2, 3
KEY_AGREEMENT, KEY_CERT_SIGN, CRL_SIGN = 4, 5, 6
_CA_USAGES = frozenset({KEY_CERT_SIGN, CRL_SIGN})
_SIGNING_USAGES = frozenset({DIGITAL_SIGNATURE, NON_REPUDIATION}) | _CA_USAGES
_KEY_EXCHANGE_USAGES = frozenset({KEY_ENCIPHERMENT, KEY_AGREEMENT})

_MAX_DEPTH = 16  # nesting inside one extension value; real ones use fewer than 8
_TLS_NAMES = {OID_SERVER_AUTH: "serverAuth", OID_CLIENT_AUTH: "clientAuth"}


@dataclass(frozen=True)
class EKProfile:
    """The extensions that say what a certificate is for.

    ``eku`` and ``key_usage`` are None when the extension is absent.
    """

    is_ca: bool
    key_usage: frozenset[int] | None
    eku: tuple[str, ...] | None
    tpm_san: bool  # subjectAltName holds the TCG TPM manufacturer attribute
    tpm_spec: bool  # subjectDirectoryAttributes holds the TCG TPM specification


def _refuse(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.EK_CHAIN_INVALID,
                         hint="only a TPM's endorsement key certificate may identify a TPM")


def check_ek_profile(der: bytes) -> EKProfile:
    """The profile of the certificate ``der``; raises ek_chain_invalid unless it is an
    EK certificate by the rules in this module's docstring."""
    profile = read_profile(der)
    if profile.is_ca:
        raise _refuse("a CA certificate (basicConstraints cA) is not an EK certificate")
    usage = profile.key_usage
    if usage is not None and usage & _CA_USAGES:
        raise _refuse("a certificate for signing certificates or CRLs is not an EK certificate")
    if profile.eku is not None and OID_EK_CERTIFICATE not in profile.eku:
        named = ", ".join(_TLS_NAMES.get(oid, oid) for oid in profile.eku) or "none"
        raise _refuse(f"the certificate's extended key usage ({named}) does not include the "
                      f"EK certificate purpose {OID_EK_CERTIFICATE}")
    exchange_only = (usage is not None and bool(usage & _KEY_EXCHANGE_USAGES)
                     and not usage & _SIGNING_USAGES)
    if not (profile.eku or profile.tpm_san or profile.tpm_spec or exchange_only):
        raise _refuse("the certificate carries nothing of the TCG EK profile (EK extended key "
                      "usage, TPM attributes) and its key usage is not an EK's (key "
                      "encipherment or agreement only)")
    return profile


def read_profile(der: bytes) -> EKProfile:
    """The extensions of the X.509 certificate ``der`` that :func:`check_ek_profile` reads."""
    extensions = _extensions(der)
    basic = extensions.get(_BASIC_CONSTRAINTS)
    usage = extensions.get(_KEY_USAGE)
    eku = extensions.get(_EXTENDED_KEY_USAGE)
    san = extensions.get(_SUBJECT_ALT_NAME)
    sda = extensions.get(_SUBJECT_DIRECTORY_ATTRIBUTES)
    return EKProfile(
        is_ca=basic is not None and _is_ca(basic),
        key_usage=None if usage is None else _key_usage(usage),
        eku=None if eku is None else _eku(eku),
        tpm_san=san is not None and OID_TPM_MANUFACTURER in _oids_within(san),
        tpm_spec=sda is not None and OID_TPM_SPECIFICATION in _oids_within(sda),
    )


# -- DER, as far as the extensions ---------------------------------------------------------

_SEQUENCE, _BOOLEAN, _OID, _OCTET_STRING, _BIT_STRING = 0x30, 0x01, 0x06, 0x04, 0x03
_EXTENSIONS_TAG = 0xA3  # [3] EXPLICIT in TBSCertificate


def _malformed(what: str) -> EvidenceError:
    return EvidenceError(f"certificate DER: {what}", reason=Reason.EK_CHAIN_INVALID)


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the TLV at ``pos``, inside ``data[:end]``."""
    if pos + 2 > end:
        raise _malformed("truncated")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _malformed("multi-byte tags are not used in certificates")
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > end:
            raise _malformed("bad length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    if start + length > end:
        raise _malformed("a value runs past its container")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, value, after = _tlv(data, pos, end)
        out.append((tag, value, after))
        pos = after
    return out


def _extensions(der: bytes) -> dict[str, bytes]:
    """Extension OID -> extnValue contents; a repeated extension is refused (RFC 5280)."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE:
        raise _malformed("not a SEQUENCE")
    tbs_tag, tbs_start, tbs_end = _tlv(der, start, end)
    if tbs_tag != _SEQUENCE:
        raise _malformed("no TBSCertificate")
    found: dict[str, bytes] = {}
    for field_tag, value, after in _children(der, tbs_start, tbs_end):
        if field_tag != _EXTENSIONS_TAG:
            continue
        seq_tag, seq_start, seq_end = _tlv(der, value, after)
        if seq_tag != _SEQUENCE:
            raise _malformed("extensions are not a SEQUENCE")
        for ext_tag, ext_start, ext_end in _children(der, seq_start, seq_end):
            if ext_tag != _SEQUENCE:
                raise _malformed("an extension is not a SEQUENCE")
            parts = _children(der, ext_start, ext_end)
            if len(parts) not in (2, 3) or parts[0][0] != _OID or parts[-1][0] != _OCTET_STRING:
                raise _malformed("an extension is not (OID, [critical], OCTET STRING)")
            oid = _oid(der[parts[0][1]:parts[0][2]])
            if oid in found:
                raise _malformed(f"extension {oid} appears twice")
            found[oid] = der[parts[-1][1]:parts[-1][2]]
    return found


def _oid(body: bytes) -> str:
    if not body or body[-1] & 0x80:
        raise _malformed("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _is_ca(value: bytes) -> bool:
    tag, start, end = _tlv(value, 0, len(value))
    if tag != _SEQUENCE:
        raise _malformed("basicConstraints is not a SEQUENCE")
    parts = _children(value, start, end)
    if parts and parts[0][0] == _BOOLEAN:
        body = value[parts[0][1]:parts[0][2]]
        return body != b"\x00"  # any non-zero byte is TRUE to OpenSSL; count it as a CA
    return False


def _key_usage(value: bytes) -> frozenset[int]:
    tag, start, end = _tlv(value, 0, len(value))
    if tag != _BIT_STRING or start == end:
        raise _malformed("keyUsage is not a BIT STRING")
    bits = value[start + 1:end]
    return frozenset(i * 8 + b for i, byte in enumerate(bits) for b in range(8)
                     if byte & (0x80 >> b))


def _eku(value: bytes) -> tuple[str, ...]:
    tag, start, end = _tlv(value, 0, len(value))
    if tag != _SEQUENCE:
        raise _malformed("extendedKeyUsage is not a SEQUENCE")
    parts = _children(value, start, end)
    if any(part_tag != _OID for part_tag, _, _ in parts):
        raise _malformed("extendedKeyUsage holds something other than OIDs")
    return tuple(_oid(value[s:e]) for _, s, e in parts)


def _oids_within(value: bytes) -> set[str]:
    """Every OID in a DER value, at any nesting depth (constructed tags are walked)."""
    found: set[str] = set()
    stack = [(0, len(value), 0)]
    while stack:
        start, end, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _malformed("nested too deeply")
        for tag, s, e in _children(value, start, end):
            if tag == _OID:
                found.add(_oid(value[s:e]))
            elif tag & 0x20:  # constructed
                stack.append((s, e, depth + 1))
    return found
