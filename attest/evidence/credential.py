"""TPM2_MakeCredential in software: the verifier's half of credential activation.

The verifier wraps a secret so that only the TPM holding the EK can unwrap it,
and only for an object with the given name (the AK) loaded in that TPM
(TPM 2.0 Part 1, sections 24 "Credential Protection" and 11.4 "KDFs").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 47 moved CFB (still what TPMs use) to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from attest.errors import EvidenceError
from attest.evidence.pcrs import DIGEST_SIZES
from attest.evidence.signatures import hash_algorithm, public_key
from attest.evidence.structures import CURVE_BYTES, Alg, Curve, ECCParms, Public
from attest.reasons import Reason

_IDENTITY = b"IDENTITY\0"


@dataclass(frozen=True)
class Credential:
    """What ActivateCredential takes: TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, marshalled."""

    credential_blob: bytes
    encrypted_secret: bytes


def kdfa(
    hash_alg: str, key: bytes, label: bytes, context_u: bytes, context_v: bytes, *, bits: int
) -> bytes:
    """SP 800-108 counter-mode KDF with HMAC, as the TPM defines it (label gets its NUL)."""
    label = label if label.endswith(b"\0") else label + b"\0"
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += hmac.new(key, struct.pack(">I", counter) + label + context_u + context_v
                        + struct.pack(">I", bits), hash_alg).digest()
    return _truncate(out, bits)


def kdfe(
    hash_alg: str, z: bytes, label: bytes, party_u: bytes, party_v: bytes, *, bits: int
) -> bytes:
    """SP 800-56A concatenation KDF, as the TPM defines it (label gets its NUL)."""
    label = label if label.endswith(b"\0") else label + b"\0"
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += hashlib.new(hash_alg, struct.pack(">I", counter) + z + label + party_u
                           + party_v).digest()
    return _truncate(out, bits)


def _truncate(out: bytes, bits: int) -> bytes:
    data = bytearray(out[: (bits + 7) // 8])
    if bits % 8:
        data[0] &= (1 << (bits % 8)) - 1
    return bytes(data)


def _b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def make_credential(
    ek: Public,
    secret: bytes,
    object_name: bytes,
    *,
    seed: bytes | None = None,
    ephemeral: ec.EllipticCurvePrivateKey | None = None,
) -> Credential:
    """Wrap ``secret`` for the TPM holding ``ek``, releasable only to ``object_name``.

    ``seed`` (RSA EKs) and ``ephemeral`` (ECC EKs) exist for reproducible tests;
    leave them unset in production so fresh randomness is used.
    """
    name_alg = ek.name_alg
    size = DIGEST_SIZES[name_alg]
    if not secret or len(secret) > size:
        raise ValueError(f"a credential for this EK must be 1-{size} bytes")
    symmetric = ek.parms.symmetric
    if symmetric.algorithm != Alg.AES or symmetric.mode != Alg.CFB:
        raise EvidenceError("EK is not a storage key with AES-CFB", reason=Reason.EK_CHAIN_INVALID)
    key = public_key(ek, Reason.EK_CHAIN_INVALID)
    if isinstance(key, rsa.RSAPublicKey):
        seed = seed if seed is not None else os.urandom(size)
        # OAEP label "IDENTITY\0", hashed with the EK's nameAlg (Part 1, B.10.3)
        algorithm = hash_algorithm(name_alg)
        encrypted = key.encrypt(
            seed, padding.OAEP(padding.MGF1(algorithm), algorithm, _IDENTITY)
        )
    else:
        assert isinstance(ek.parms, ECCParms)  # noqa: S101 (narrowing)
        seed, encrypted = _ecc_seed(key, Curve(ek.parms.curve), name_alg, ephemeral)
    sym_key = kdfa(name_alg, seed, b"STORAGE", object_name, b"", bits=symmetric.key_bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(_b(secret)) + encryptor.finalize()
    hmac_key = kdfa(name_alg, seed, b"INTEGRITY", b"", b"", bits=size * 8)
    integrity = hmac.new(hmac_key, enc_identity + object_name, name_alg).digest()
    return Credential(_b(_b(integrity) + enc_identity), _b(encrypted))


def _ecc_seed(
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    curve: Curve,
    name_alg: str,
    ephemeral: ec.EllipticCurvePrivateKey | None,
) -> tuple[bytes, bytes]:
    """Seed by one-pass ECDH (Part 1, C.6.4): KDFe over Z with both x coordinates."""
    assert isinstance(key, ec.EllipticCurvePublicKey)  # noqa: S101 (narrowing)
    eph = ephemeral if ephemeral is not None else ec.generate_private_key(key.curve)
    z = eph.exchange(ec.ECDH(), key)
    size = CURVE_BYTES[curve]
    eph_point = eph.public_key().public_numbers()
    eph_x, eph_y = eph_point.x.to_bytes(size, "big"), eph_point.y.to_bytes(size, "big")
    ek_x = key.public_numbers().x.to_bytes(size, "big")
    seed = kdfe(name_alg, z, b"IDENTITY", eph_x, ek_x, bits=DIGEST_SIZES[name_alg] * 8)
    return seed, _b(eph_x) + _b(eph_y)
