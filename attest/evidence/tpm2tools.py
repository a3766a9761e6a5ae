"""File formats of tpm2-tools 5, so attest and tpm2-tools read each other's files.

The serialized PCR file (`tpm2_quote -o`) is a raw little-endian dump of C
structs from tpm2-tss: TPML_PCR_SELECTION (4 + 16 x 8 = 132 bytes), a UINT32
count n, then n TPML_DIGEST (4 + 8 x TPM2B_DIGEST(2 + 64) = 532 bytes each), the
PCR values packed eight to a TPML_DIGEST in selection order.
"""

from __future__ import annotations

import struct

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest.errors import EvidenceError, MalformedInput, UsageError
from attest.evidence.pcrs import DIGEST_SIZES, HASH_ALGS, HASH_NAMES, PCRSelection, PCRValues
from attest.evidence.signatures import PublicKey, public_key
from attest.evidence.structures import (
    Attest,
    Public,
    Signature,
    parse_attest,
    parse_public,
    parse_public_tpm2b,
    parse_signature,
)
from attest.reasons import Reason

_SELECTIONS_MAX = 16  # TPM2_NUM_PCR_BANKS in tpm2-tss
_PCR_SELECT_MAX = 4  # TPM2_PCR_SELECT_MAX: the C array size, not the TPM's sizeofSelect
_DIGESTS_PER_LIST = 8
_TPMU_HA_SIZE = 64
TPML_PCR_SELECTION_SIZE = 4 + _SELECTIONS_MAX * 8
TPML_DIGEST_SIZE = 4 + _DIGESTS_PER_LIST * (2 + _TPMU_HA_SIZE)


def write_serialized_pcrs(selection: PCRSelection, values: PCRValues) -> bytes:
    """The bytes `tpm2_quote -o FILE` writes for these PCRs."""
    if len(selection.banks) > _SELECTIONS_MAX:
        raise ValueError("more banks than a TPML_PCR_SELECTION holds")
    out = bytearray(struct.pack("<I", len(selection.banks)))
    for bank, pcrs in selection.banks:
        bitmap = bytearray(_PCR_SELECT_MAX)
        for index in pcrs:
            bitmap[index // 8] |= 1 << (index % 8)
        # UINT16 hash, UINT8 sizeofSelect, BYTE[4] pcrSelect, one byte of struct padding
        out += struct.pack("<HB", HASH_ALGS[bank], 3) + bitmap + b"\0"
    out += bytes(TPML_PCR_SELECTION_SIZE - len(out))
    ordered = [values[key] for key in selection]
    chunks = [ordered[i : i + _DIGESTS_PER_LIST] for i in range(0, len(ordered), _DIGESTS_PER_LIST)]
    out += struct.pack("<I", len(chunks))
    for chunk in chunks:
        digest_list = bytearray(struct.pack("<I", len(chunk)))
        for value in chunk:
            digest_list += struct.pack("<H", len(value)) + value.ljust(_TPMU_HA_SIZE, b"\0")
        out += digest_list.ljust(TPML_DIGEST_SIZE, b"\0")
    return bytes(out)


# --- readers -----------------------------------------------------------------


def _bad(message: str) -> MalformedInput:
    return MalformedInput(message, reason=Reason.MALFORMED_ARTIFACT)


def read_serialized_pcrs(data: bytes) -> tuple[PCRSelection, dict[tuple[str, int], bytes]]:
    """Read a `tpm2_quote -o` PCR file: its selection and the values, by (bank, index)."""
    lists, rest = divmod(len(data) - TPML_PCR_SELECTION_SIZE - 4, TPML_DIGEST_SIZE)
    if len(data) < TPML_PCR_SELECTION_SIZE + 4 or rest:
        raise _bad(f"PCR file of {len(data)} bytes is not 132 + 4 + 532*n bytes long")
    count = struct.unpack_from("<I", data, 0)[0]
    if count > _SELECTIONS_MAX:
        raise _bad(f"PCR file selects {count} banks, more than {_SELECTIONS_MAX}")
    banks: dict[str, list[int]] = {}
    for i in range(count):
        alg, size = struct.unpack_from("<HB", data, 4 + 8 * i)
        bank = HASH_NAMES.get(alg)
        if bank is None or size > _PCR_SELECT_MAX or bank in banks:
            raise _bad(f"PCR file selection entry {i} is not a usable bank selection")
        bitmap = data[4 + 8 * i + 3 : 4 + 8 * i + 3 + size]
        banks[bank] = [n for n in range(size * 8) if bitmap[n // 8] >> (n % 8) & 1]
    selection = _selection(banks)
    if struct.unpack_from("<I", data, TPML_PCR_SELECTION_SIZE)[0] != lists:
        raise _bad("PCR file digest-list count does not match its size")
    digests: list[bytes] = []
    for n in range(lists):
        offset = TPML_PCR_SELECTION_SIZE + 4 + n * TPML_DIGEST_SIZE
        in_list = struct.unpack_from("<I", data, offset)[0]
        if in_list > _DIGESTS_PER_LIST:
            raise _bad(f"PCR file digest list {n} claims {in_list} digests")
        for k in range(in_list):
            at = offset + 4 + k * (2 + _TPMU_HA_SIZE)
            size = struct.unpack_from("<H", data, at)[0]
            if size > _TPMU_HA_SIZE:
                raise _bad(f"PCR file digest of {size} bytes")
            digests.append(data[at + 2 : at + 2 + size])
    return selection, _assign(selection, digests)


def read_pcr_values(data: bytes, selection: PCRSelection) -> dict[tuple[str, int], bytes]:
    """Read bare PCR values (`tpm2_pcrread -o`): digests back to back in selection order."""
    expected = sum(DIGEST_SIZES[bank] for bank, _ in selection)
    if len(data) != expected:
        raise _bad(f"PCR values file has {len(data)} bytes; {selection} needs {expected}")
    digests, offset = [], 0
    for bank, _ in selection:
        digests.append(data[offset : offset + DIGEST_SIZES[bank]])
        offset += DIGEST_SIZES[bank]
    return _assign(selection, digests)


def read_pcrs(
    data: bytes, selection: PCRSelection | None = None
) -> tuple[PCRSelection, dict[tuple[str, int], bytes]]:
    """Either PCR file form: bare values when ``selection`` (-l) is given, else serialized."""
    if selection is not None:
        return selection, read_pcr_values(data, selection)
    return read_serialized_pcrs(data)


def _selection(banks: dict[str, list[int]]) -> PCRSelection:
    try:
        return PCRSelection.of(banks)
    except UsageError as exc:
        raise _bad(f"PCR file selection: {exc.message}") from None


def _assign(selection: PCRSelection, digests: list[bytes]) -> dict[tuple[str, int], bytes]:
    if len(digests) != len(selection):
        raise _bad(f"PCR file holds {len(digests)} values for {len(selection)} selected PCRs")
    values: dict[tuple[str, int], bytes] = {}
    for (bank, index), value in zip(selection, digests, strict=True):
        if len(value) != DIGEST_SIZES[bank]:
            raise _bad(f"PCR {bank}:{index} value has {len(value)} bytes")
        values[(bank, index)] = value
    return values


def read_public(data: bytes) -> Public | PublicKey:
    """A public key as tpm2-tools takes it: PEM (key or certificate), TPM2B_PUBLIC, TPMT_PUBLIC.

    PEM gives a bare key (no TPM name); the TPM forms give a Public with its name.
    """
    if data.lstrip().startswith(b"-----BEGIN"):
        return _read_pem_key(data)
    try:
        if len(data) >= 2 and struct.unpack_from(">H", data)[0] == len(data) - 2:
            return parse_public_tpm2b(data)
        return parse_public(data)
    except EvidenceError as exc:
        raise _bad(f"not a PEM key, TPM2B_PUBLIC or TPMT_PUBLIC: {exc.message}") from None


def _read_pem_key(data: bytes) -> PublicKey:
    key: object
    try:
        if b"CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:  # an unknown curve or key type
        raise _bad(f"unreadable PEM: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _bad("PEM key is neither RSA nor ECC")
    return key


def read_signature(data: bytes) -> Signature:
    """A TPMT_SIGNATURE file (`tpm2_quote -s`, tss format)."""
    return parse_signature(data, Reason.QUOTE_MALFORMED)


def read_attest(data: bytes) -> Attest:
    """A TPMS_ATTEST file (`tpm2_quote -m`)."""
    return parse_attest(data, Reason.QUOTE_MALFORMED)


# --- writers -----------------------------------------------------------------


def write_public(public: Public, form: str = "tpm2b") -> bytes:
    """``form``: "tpm2b" (tpm2-tools' tss format), "tpmt", or "pem"."""
    if form == "tpm2b":
        return public.marshal_tpm2b()
    if form == "tpmt":
        return public.marshal()
    if form == "pem":
        return public_key(public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    raise ValueError(f"unknown public key form {form!r}")


def write_signature(signature: Signature) -> bytes:
    return signature.marshal()


def write_attest(attest: Attest) -> bytes:
    return attest.raw
