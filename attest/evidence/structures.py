"""Strict parsers and writers for the TPM 2.0 wire structures a verifier receives.

TPM 2.0 Part 2 (structures), big-endian. Every size read from the input is
checked against its type's maximum and against the bytes left before anything
is sliced, so hostile input costs at most its own length; trailing bytes are
refused. Failures raise :class:`MalformedEvidence` carrying the reason the
caller chose (a quote parser says ``quote_malformed``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from functools import cached_property, lru_cache

from attest.errors import MalformedEvidence
from attest.evidence.pcrs import DIGEST_SIZES, HASH_NAMES, PCR_COUNT, PCRSelection
from attest.reasons import Reason

TPM_GENERATED_VALUE = 0xFF544347

# Largest sizes the TPM's own unions allow (Part 2: TPMU_HA, TPMU_NAME, RSA 4096, P-521).
MAX_DIGEST = 64
MAX_NAME = 2 + MAX_DIGEST
MAX_DATA = 2 + MAX_DIGEST
MAX_RSA_KEY_BYTES = 512
MAX_ECC_KEY_BYTES = 66
MAX_PCR_BANKS = 16
MAX_SIZEOF_SELECT = 4


class Alg(IntEnum):
    """TPM_ALG_ID values used in the structures attest reads (Part 2, table 9)."""

    RSA = 0x0001
    SHA1 = 0x0004
    HMAC = 0x0005
    AES = 0x0006
    KEYEDHASH = 0x0008
    XOR = 0x000A
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    NULL = 0x0010
    RSASSA = 0x0014
    RSAES = 0x0015
    RSAPSS = 0x0016
    OAEP = 0x0017
    ECDSA = 0x0018
    ECDH = 0x0019
    ECDAA = 0x001A
    SM2 = 0x001B
    ECSCHNORR = 0x001C
    ECMQV = 0x001D
    ECC = 0x0023
    SYMCIPHER = 0x0025
    CFB = 0x0043


class Curve(IntEnum):
    """TPM_ECC_CURVE values for the NIST curves."""

    NIST_P256 = 0x0003
    NIST_P384 = 0x0004
    NIST_P521 = 0x0005


CURVE_BYTES: dict[Curve, int] = {Curve.NIST_P256: 32, Curve.NIST_P384: 48, Curve.NIST_P521: 66}


class ST(IntEnum):
    """TPM_ST values of TPMS_ATTEST.type."""

    ATTEST_CERTIFY = 0x8017
    ATTEST_QUOTE = 0x8018
    ATTEST_CREATION = 0x801A


class ObjectAttributes(IntFlag):
    """TPMA_OBJECT bits (Part 2, table 31)."""

    FIXED_TPM = 1 << 1
    ST_CLEAR = 1 << 2
    FIXED_PARENT = 1 << 4
    SENSITIVE_DATA_ORIGIN = 1 << 5
    USER_WITH_AUTH = 1 << 6
    ADMIN_WITH_POLICY = 1 << 7
    NO_DA = 1 << 10
    ENCRYPTED_DUPLICATION = 1 << 11
    RESTRICTED = 1 << 16
    DECRYPT = 1 << 17
    SIGN = 1 << 18
    X509_SIGN = 1 << 19


# Schemes a key may name. All carry a hashAlg except RSAES (nothing) and ECDAA (+ count).
_RSA_SCHEMES: set[int] = {Alg.RSASSA, Alg.RSAPSS, Alg.RSAES, Alg.OAEP}
_ECC_SCHEMES: set[int] = {Alg.ECDSA, Alg.ECDH, Alg.ECDAA, Alg.SM2, Alg.ECSCHNORR, Alg.ECMQV}
# MGF1, KDF1_SP800_56A, KDF2, KDF1_SP800_108
_KDF_SCHEMES: set[int] = {0x0007, 0x0020, 0x0021, 0x0022}


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Reader:
    """A cursor over untrusted bytes; every read is bounds-checked."""

    def __init__(self, data: bytes, reason: Reason, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self.reason = reason
        self.what = what

    def fail(self, message: str) -> MalformedEvidence:
        return MalformedEvidence(f"{self.what}: {message}", reason=self.reason)

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    # take, u16 and u32 are called a dozen times per structure (every key, quote and
    # certification a verifier reads): each bounds-checks and reads in place, without
    # the property and the intermediate slice; the same refusal, word for word.
    def take(self, size: int) -> bytes:
        pos = self._pos
        end = pos + size
        if size < 0 or end > len(self._data):
            raise self._short(size)
        self._pos = end
        return self._data[pos:end]

    def _short(self, size: int) -> MalformedEvidence:
        return self.fail(f"needs {size} bytes at offset {self._pos}, {self.remaining} left")

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        pos = self._pos
        if pos + 2 > len(self._data):
            raise self._short(2)
        self._pos = pos + 2
        value: int = _U16.unpack_from(self._data, pos)[0]
        return value

    def u32(self) -> int:
        pos = self._pos
        if pos + 4 > len(self._data):
            raise self._short(4)
        self._pos = pos + 4
        value: int = _U32.unpack_from(self._data, pos)[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack(">Q", self.take(8))[0]
        return value

    def tpm2b(self, maximum: int, field: str) -> bytes:
        size = self.u16()
        if size > maximum:
            raise self.fail(f"{field} size {size} exceeds the maximum {maximum}")
        return self.take(size)

    def end(self) -> None:
        if self.remaining:
            raise self.fail(f"{self.remaining} trailing bytes")


def _b(data: bytes) -> bytes:
    """A TPM2B: u16 size then the bytes."""
    return struct.pack(">H", len(data)) + data


def hash_name_of(alg: int, reader: Reader, field: str) -> str:
    name = HASH_NAMES.get(alg)
    if name is None:
        raise reader.fail(f"{field} 0x{alg:04x} is not a supported hash algorithm")
    return name


# --- names ------------------------------------------------------------------


def check_name(name: bytes, reader: Reader, field: str) -> None:
    """A TPM2B_NAME holds nothing, a handle, or nameAlg || digest of that size."""
    if len(name) in (0, 4):
        return
    alg = int.from_bytes(name[:2], "big") if len(name) >= 2 else -1
    bank = HASH_NAMES.get(alg)
    if bank is None or len(name) != 2 + DIGEST_SIZES[bank]:
        raise reader.fail(f"{field} is not a valid TPM name")


# --- TPML_PCR_SELECTION ------------------------------------------------------


def read_pcr_selection(reader: Reader) -> PCRSelection:
    count = reader.u32()
    if count > MAX_PCR_BANKS:
        raise reader.fail(f"PCR selection lists {count} banks, more than {MAX_PCR_BANKS}")
    banks: dict[str, list[int]] = {}
    for _ in range(count):
        bank = hash_name_of(reader.u16(), reader, "PCR bank")
        size = reader.u8()
        if size > MAX_SIZEOF_SELECT:
            raise reader.fail(f"sizeofSelect {size} exceeds {MAX_SIZEOF_SELECT}")
        bitmap = reader.take(size)
        if bank in banks:
            # the digest order would be ambiguous; no TPM reports a bank twice
            raise reader.fail(f"PCR bank {bank} selected twice")
        indices = [i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1]
        if indices and indices[-1] >= PCR_COUNT:
            raise reader.fail(f"PCR {indices[-1]} selected; this verifier knows {PCR_COUNT} PCRs")
        banks[bank] = indices
    return PCRSelection.of(banks)


def parse_pcr_selection(data: bytes, reason: Reason = Reason.QUOTE_MALFORMED) -> PCRSelection:
    reader = Reader(data, reason, "TPML_PCR_SELECTION")
    selection = read_pcr_selection(reader)
    reader.end()
    return selection


@lru_cache(maxsize=64)
def _known_selection(data: bytes) -> PCRSelection:
    """A TPML_PCR_SELECTION's exact bytes, parsed once: a verifier sees the same few.

    A PCRSelection is immutable, so quotes with the same selection bytes share one.
    """
    return parse_pcr_selection(data)


# --- TPMS_ATTEST --------------------------------------------------------------


@dataclass(frozen=True)
class ClockInfo:
    """TPMS_CLOCK_INFO. resetCount/restartCount may be obfuscated: compare for change only."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True)
class QuoteInfo:
    pcr_select: PCRSelection
    pcr_digest: bytes


@dataclass(frozen=True)
class CertifyInfo:
    name: bytes
    qualified_name: bytes


@dataclass(frozen=True)
class CreationInfo:
    object_name: bytes
    creation_hash: bytes


@dataclass(frozen=True)
class Attest:
    """A parsed TPMS_ATTEST; ``raw`` keeps the exact bytes the signature covers."""

    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    attested: QuoteInfo | CertifyInfo | CreationInfo
    raw: bytes


# magic, type, qualifiedSigner size, and the signer's first two bytes (its nameAlg)
_ATTEST_HEAD = struct.Struct(">IHHH")
_U16 = struct.Struct(">H")
# clock, resetCount, restartCount, safe, firmwareVersion, then TPML_PCR_SELECTION.count
_ATTEST_CLOCK = struct.Struct(">QIIBQI")
_CLOCK_TO_SELECT = _ATTEST_CLOCK.size - 4  # bytes from clockInfo to the selection
_QUOTE = int(ST.ATTEST_QUOTE)
# The size of a TPM2B_NAME that is a digest name, by its nameAlg.
_NAME_SIZES = {alg: 2 + DIGEST_SIZES[bank] for alg, bank in HASH_NAMES.items()}
_new = object.__new__

# A quote's fields, in TPMS_ATTEST order: qualifiedSigner, extraData, clockInfo,
# firmwareVersion, pcrSelect, pcrDigest.
QuoteFields = tuple[bytes, bytes, ClockInfo, int, PCRSelection, bytes]


def parse_quote_fields(data: bytes) -> QuoteFields | None:
    """The fields of a well-formed quote TPMS_ATTEST, read in one pass; else None.

    Accepts exactly what :func:`parse_attest` accepts as a quote, with the same
    values; for anything else (other types, any error, input that is not
    ``bytes``) it returns None and parse_attest must decide and name the error.
    """
    if type(data) is not bytes:
        return None
    layout = _QUOTE_LAYOUTS.get(len(data))
    if layout is None:
        return _read_quote(data)
    # A layout seen before: one struct reads every field. Each size field must be the
    # layout's and the selection must parse to its last byte; the struct spans all of
    # ``data``; so the offsets are the ones a field-by-field read finds.
    compiled, signer_size, extra_size, digest_size, known_select, known_selection = layout
    (magic, kind, signer_size_read, signer, extra_size_read, extra, clock, resets, restarts,
     safe, firmware, select, digest_size_read, digest) = compiled.unpack(data)
    if (
        magic != TPM_GENERATED_VALUE
        or kind != _QUOTE
        or signer_size_read != signer_size
        or extra_size_read != extra_size
        or digest_size_read != digest_size
        or safe > 1
        or (
            signer_size not in (0, 4)
            and _NAME_SIZES_BY_ALG_BYTES.get(signer[:2]) != signer_size
        )
    ):
        return _read_quote(data)
    if select == known_select:
        selection = known_selection
    else:
        try:
            selection = _known_selection(select)
        except MalformedEvidence:
            return _read_quote(data)  # another layout of the same length, or malformed
    # ClockInfo(clock, resets, restarts, bool(safe)) without the frozen dataclass's
    # __init__ (object.__setattr__ per field): the same object, in a third of the time.
    # ClockInfo has no __post_init__; tests compare both.
    clock_info = _new(ClockInfo)
    clock_info.__dict__.update(
        clock=clock, reset_count=resets, restart_count=restarts, safe=bool(safe)
    )
    return signer, extra, clock_info, firmware, selection, digest


# A quote's layout: the sizes of qualifiedSigner, extraData, the TPML_PCR_SELECTION
# and pcrDigest fix every offset. A verifier sees the same few (an AK, a nonce size, a
# selection), so each is compiled into one struct once, keyed by the total length,
# with the selection bytes last seen in it and their PCRSelection.
_QuoteLayout = tuple[struct.Struct, int, int, int, bytes, PCRSelection]
_QUOTE_LAYOUTS: dict[int, _QuoteLayout] = {}
_MAX_QUOTE_LAYOUTS = 64
# The size of a TPM2B_NAME that is a digest name, by its first two bytes (nameAlg).
_NAME_SIZES_BY_ALG_BYTES = {alg.to_bytes(2, "big"): size for alg, size in _NAME_SIZES.items()}


def _read_quote(data: bytes) -> QuoteFields | None:
    """parse_quote_fields, offset by offset; remembers the layout of what it accepts."""
    end = len(data)
    if end < 10:  # _ATTEST_HEAD.size
        return None
    magic, kind, size, name_alg = _ATTEST_HEAD.unpack_from(data)
    if magic != TPM_GENERATED_VALUE or kind != _QUOTE:
        return None
    # check_name: empty, a handle, or nameAlg || digest (then at most MAX_NAME bytes)
    if size not in (0, 4) and _NAME_SIZES.get(name_alg) != size:
        return None
    pos = 8 + size
    if pos + 2 > end:
        return None
    signer = data[8:pos]
    size = _U16.unpack_from(data, pos)[0]
    start = pos + 2
    pos = start + size
    if size > MAX_DATA or pos + _CLOCK_TO_SELECT + 4 > end:
        return None
    extra = data[start:pos]
    clock, resets, restarts, safe, firmware, count = _ATTEST_CLOCK.unpack_from(data, pos)
    if safe > 1 or count > MAX_PCR_BANKS:
        return None
    start = pos + _CLOCK_TO_SELECT  # the selection, from its count
    pos = start + 4
    for _ in range(count):  # TPMS_PCR_SELECTION: hash u16, sizeofSelect u8, bitmap
        if pos + 3 > end:
            return None
        pos += 3 + data[pos + 2]
    if pos + 2 > end:
        return None
    size = _U16.unpack_from(data, pos)[0]
    if size > MAX_DIGEST or pos + 2 + size != end:
        return None
    select = data[start:pos]
    try:
        selection = _known_selection(select)
    except MalformedEvidence:
        return None
    if len(_QUOTE_LAYOUTS) >= _MAX_QUOTE_LAYOUTS:
        _QUOTE_LAYOUTS.clear()
    _QUOTE_LAYOUTS[end] = (
        struct.Struct(f">IHH{len(signer)}sH{len(extra)}sQIIBQ{len(select)}sH{size}s"),
        len(signer), len(extra), size, select, selection,
    )
    return (signer, extra, _clock_info(clock, resets, restarts, safe), firmware, selection,
            data[pos + 2:])


def _clock_info(clock: int, resets: int, restarts: int, safe: int) -> ClockInfo:
    """ClockInfo(clock, resets, restarts, bool(safe)) without the frozen dataclass's
    __init__ (object.__setattr__ per field): the same object, in a third of the time.
    ClockInfo has no __post_init__; tests compare both.
    """
    info = _new(ClockInfo)
    info.__dict__.update(
        clock=clock, reset_count=resets, restart_count=restarts, safe=bool(safe)
    )
    return info


def parse_attest(data: bytes, reason: Reason = Reason.QUOTE_MALFORMED) -> Attest:
    quote = parse_quote_fields(data)
    if quote is not None:
        signer, extra, clock_info, firmware, selection, pcr_digest = quote
        return Attest(_QUOTE, signer, extra, clock_info, firmware,
                      QuoteInfo(selection, pcr_digest), data)
    reader = Reader(data, reason, "TPMS_ATTEST")
    magic = reader.u32()
    if magic != TPM_GENERATED_VALUE:
        raise reader.fail(f"magic 0x{magic:08x} is not TPM_GENERATED_VALUE (0xff544347)")
    kind = reader.u16()
    signer = reader.tpm2b(MAX_NAME, "qualifiedSigner")
    check_name(signer, reader, "qualifiedSigner")
    extra = reader.tpm2b(MAX_DATA, "extraData")
    clock, resets, restarts, safe = reader.u64(), reader.u32(), reader.u32(), reader.u8()
    if safe > 1:
        raise reader.fail(f"clockInfo.safe is {safe}, not a TPMI_YES_NO")
    firmware = reader.u64()
    attested: QuoteInfo | CertifyInfo | CreationInfo
    if kind == ST.ATTEST_QUOTE:
        selection = read_pcr_selection(reader)
        attested = QuoteInfo(selection, reader.tpm2b(MAX_DIGEST, "pcrDigest"))
    elif kind == ST.ATTEST_CERTIFY:
        name = reader.tpm2b(MAX_NAME, "name")
        check_name(name, reader, "name")
        qualified = reader.tpm2b(MAX_NAME, "qualifiedName")
        check_name(qualified, reader, "qualifiedName")
        attested = CertifyInfo(name, qualified)
    elif kind == ST.ATTEST_CREATION:
        name = reader.tpm2b(MAX_NAME, "objectName")
        check_name(name, reader, "objectName")
        attested = CreationInfo(name, reader.tpm2b(MAX_DIGEST, "creationHash"))
    else:
        raise reader.fail(f"attestation type 0x{kind:04x} is not quote, certify or creation")
    reader.end()
    return Attest(kind, signer, extra, ClockInfo(clock, resets, restarts, bool(safe)),
                  firmware, attested, bytes(data))


# --- TPMT_SIGNATURE -----------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """TPMT_SIGNATURE: RSASSA/RSAPSS carry ``rsa``; ECDSA carries ``r`` and ``s``."""

    sig_alg: int
    hash_alg: str
    rsa: bytes = b""
    r: bytes = b""
    s: bytes = b""

    def marshal(self) -> bytes:
        head = struct.pack(">HH", self.sig_alg, _hash_id(self.hash_alg))
        if self.sig_alg == Alg.ECDSA:
            return head + _b(self.r) + _b(self.s)
        return head + _b(self.rsa)


def _hash_id(bank: str) -> int:
    return _HASH_IDS[bank]


# Each hash's TPM_ALG_ID by name (a KeyError for any other, as before): made once, every
# marshalling of a key or signature asks it.
_HASH_IDS = {name: alg for alg, name in HASH_NAMES.items()}


_SIGNATURE_HEAD = struct.Struct(">HHH")  # sigAlg, hashAlg, first TPM2B size
_ECDSA = int(Alg.ECDSA)
_RSA_SIGNATURES = (int(Alg.RSASSA), int(Alg.RSAPSS))

# A TPMT_SIGNATURE's fields as Signature holds them: sig_alg, hash_alg, rsa, r, s.
SignatureFields = tuple[int, str, bytes, bytes, bytes]


def signature_fields(signature: Signature) -> SignatureFields:
    return signature.sig_alg, signature.hash_alg, signature.rsa, signature.r, signature.s


def parse_signature_fields(data: bytes) -> SignatureFields | None:
    """The fields parse_signature returns for well-formed bytes, else None.

    None (any error, input that is not ``bytes``) leaves it to parse_signature to
    decide and name the error.
    """
    if type(data) is not bytes or len(data) < 6:
        return None
    sig_alg, hash_id, size = _SIGNATURE_HEAD.unpack_from(data)
    hash_alg = HASH_NAMES.get(hash_id)
    if hash_alg is None:
        return None
    if sig_alg == _ECDSA:
        pos = 6 + size
        if size > MAX_ECC_KEY_BYTES or pos + 2 > len(data):
            return None
        s_size = _U16.unpack_from(data, pos)[0]
        if s_size > MAX_ECC_KEY_BYTES or pos + 2 + s_size != len(data):
            return None
        return sig_alg, hash_alg, b"", data[6:pos], data[pos + 2:]
    if sig_alg in _RSA_SIGNATURES and size <= MAX_RSA_KEY_BYTES and 6 + size == len(data):
        return sig_alg, hash_alg, data[6:], b"", b""
    return None


def parse_signature(data: bytes, reason: Reason = Reason.QUOTE_MALFORMED) -> Signature:
    fields = parse_signature_fields(data)
    if fields is not None:
        return Signature(*fields)
    reader = Reader(data, reason, "TPMT_SIGNATURE")
    sig_alg = reader.u16()
    if sig_alg not in (Alg.RSASSA, Alg.RSAPSS, Alg.ECDSA):
        # Only these can be checked against an AK; anything else is refused by policy.
        raise MalformedEvidence(
            f"TPMT_SIGNATURE: signature scheme 0x{sig_alg:04x} is not RSASSA, RSAPSS or ECDSA",
            reason=Reason.ALG_NOT_ALLOWED,
        )
    hash_alg = hash_name_of(reader.u16(), reader, "signature hashAlg")
    if sig_alg == Alg.ECDSA:
        r = reader.tpm2b(MAX_ECC_KEY_BYTES, "signatureR")
        s = reader.tpm2b(MAX_ECC_KEY_BYTES, "signatureS")
        reader.end()
        return Signature(sig_alg, hash_alg, r=r, s=s)
    rsa = reader.tpm2b(MAX_RSA_KEY_BYTES, "RSA signature")
    reader.end()
    return Signature(sig_alg, hash_alg, rsa=rsa)


# --- TPMT_PUBLIC ----------------------------------------------------------------


@dataclass(frozen=True)
class SymDef:
    """TPMT_SYM_DEF_OBJECT; ``algorithm`` NULL means no symmetric parameters."""

    algorithm: int = Alg.NULL
    key_bits: int = 0
    mode: int = 0

    def marshal(self) -> bytes:
        if self.algorithm == Alg.NULL:
            return struct.pack(">H", Alg.NULL)
        return struct.pack(">HHH", self.algorithm, self.key_bits, self.mode)


@dataclass(frozen=True)
class Scheme:
    """TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_KDF_SCHEME: the scheme and its hash."""

    scheme: int = Alg.NULL
    hash_alg: int = 0
    count: int = 0  # ECDAA only

    def marshal(self) -> bytes:
        if self.scheme in (Alg.NULL, Alg.RSAES):
            return struct.pack(">H", self.scheme)
        if self.scheme == Alg.ECDAA:
            return struct.pack(">HHH", self.scheme, self.hash_alg, self.count)
        return struct.pack(">HH", self.scheme, self.hash_alg)


@dataclass(frozen=True)
class RSAParms:
    symmetric: SymDef
    scheme: Scheme
    key_bits: int
    exponent: int  # 0 means the default 65537
    modulus: bytes

    def marshal(self) -> bytes:
        return (self.symmetric.marshal() + self.scheme.marshal()
                + struct.pack(">HI", self.key_bits, self.exponent))


@dataclass(frozen=True)
class ECCParms:
    symmetric: SymDef
    scheme: Scheme
    curve: int
    kdf: Scheme
    x: bytes
    y: bytes

    def marshal(self) -> bytes:
        return (self.symmetric.marshal() + self.scheme.marshal()
                + struct.pack(">H", self.curve) + self.kdf.marshal())


@dataclass(frozen=True)
class Public:
    """TPMT_PUBLIC of an RSA or ECC key."""

    type: int
    name_alg: str
    attributes: ObjectAttributes
    auth_policy: bytes
    parms: RSAParms | ECCParms

    def marshal(self) -> bytes:
        """TPMT_PUBLIC bytes (no TPM2B size prefix)."""
        head = struct.pack(">HHI", self.type, _hash_id(self.name_alg), int(self.attributes))
        body = head + _b(self.auth_policy) + self.parms.marshal()
        if isinstance(self.parms, RSAParms):
            return body + _b(self.parms.modulus)
        return body + _b(self.parms.x) + _b(self.parms.y)

    def marshal_tpm2b(self) -> bytes:
        return _b(self.marshal())

    @cached_property
    def name(self) -> bytes:
        """The TPM name: nameAlg (2 bytes) || H_nameAlg(TPMT_PUBLIC). Computed once per
        object (its fields are immutable): a verifier asks a key's name several times."""
        return struct.pack(">H", _hash_id(self.name_alg)) + hashlib.new(
            self.name_alg, self.marshal()
        ).digest()

    def has(self, flags: ObjectAttributes) -> bool:
        return self.attributes & flags == flags


# Each name algorithm's TPM_ALG_ID, as a name's first two bytes.
_NAME_PREFIX = {name: struct.pack(">H", alg) for alg, name in HASH_NAMES.items()}


def _read_symdef(reader: Reader) -> SymDef:
    alg = reader.u16()
    if alg == Alg.NULL:
        return SymDef()
    if alg not in (Alg.AES, 0x0013, 0x0026):  # AES, SM4, CAMELLIA
        raise reader.fail(f"symmetric algorithm 0x{alg:04x} unknown")
    return SymDef(alg, reader.u16(), reader.u16())


def _read_scheme(reader: Reader, allowed: set[int], field: str) -> Scheme:
    scheme = reader.u16()
    if scheme == Alg.NULL or (scheme == Alg.RSAES and Alg.RSAES in allowed):
        return Scheme(scheme)
    if scheme == Alg.ECDAA and Alg.ECDAA in allowed:
        return Scheme(scheme, reader.u16(), reader.u16())
    if scheme not in allowed:
        raise reader.fail(f"{field} 0x{scheme:04x} unknown")
    return Scheme(scheme, reader.u16())


def _read_public(reader: Reader) -> Public:
    kind = reader.u16()
    name_alg = hash_name_of(reader.u16(), reader, "nameAlg")
    attributes = ObjectAttributes(reader.u32())
    policy = reader.tpm2b(MAX_DIGEST, "authPolicy")
    parms: RSAParms | ECCParms
    if kind == Alg.RSA:
        symmetric = _read_symdef(reader)
        scheme = _read_scheme(reader, _RSA_SCHEMES, "RSA scheme")
        key_bits, exponent = reader.u16(), reader.u32()
        modulus = reader.tpm2b(MAX_RSA_KEY_BYTES, "RSA modulus")
        parms = RSAParms(symmetric, scheme, key_bits, exponent, modulus)
    elif kind == Alg.ECC:
        symmetric = _read_symdef(reader)
        scheme = _read_scheme(reader, _ECC_SCHEMES, "ECC scheme")
        curve = reader.u16()
        kdf = _read_scheme(reader, _KDF_SCHEMES, "KDF scheme")
        x = reader.tpm2b(MAX_ECC_KEY_BYTES, "ECC x")
        y = reader.tpm2b(MAX_ECC_KEY_BYTES, "ECC y")
        parms = ECCParms(symmetric, scheme, curve, kdf, x, y)
    else:
        raise reader.fail(f"public key type 0x{kind:04x} is not RSA or ECC")
    return Public(kind, name_alg, attributes, policy, parms)


def parse_public(data: bytes, reason: Reason = Reason.KEY_ATTRIBUTES_INVALID) -> Public:
    """Parse a TPMT_PUBLIC (no size prefix)."""
    reader = Reader(data, reason, "TPMT_PUBLIC")
    public = _read_public(reader)
    reader.end()
    # The name hashes the re-marshalled form, so it must be the bytes we were given.
    raw = bytes(data)
    if public.marshal() != raw:
        raise reader.fail("non-canonical encoding")
    # Being those bytes, they are what Public.name hashes: the name (asked of every parsed
    # key) from them, rather than from a second marshalling. Public.name is a cached
    # property, so this is the value it would compute; tests compare both.
    public.__dict__["name"] = _NAME_PREFIX[public.name_alg] + hashlib.new(
        public.name_alg, raw).digest()
    return public


def parse_public_tpm2b(data: bytes, reason: Reason = Reason.KEY_ATTRIBUTES_INVALID) -> Public:
    """Parse a TPM2B_PUBLIC: u16 size, then exactly that many bytes of TPMT_PUBLIC."""
    reader = Reader(data, reason, "TPM2B_PUBLIC")
    inner = reader.take(reader.u16())
    reader.end()
    return parse_public(inner, reason)
