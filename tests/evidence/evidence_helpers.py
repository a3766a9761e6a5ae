"""Test helpers: the external vectors (read in place) and a software TPM signer.

The software signer makes TPMS_ATTEST bytes the way a TPM lays them out, for
the checks real vectors cannot reach (ECDSA AKs, clear `safe`, certify type).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attest.evidence.pcrs import PCRSelection, composite_digest
from attest.evidence.structures import (
    Alg,
    Curve,
    ECCParms,
    ObjectAttributes,
    Public,
    Scheme,
    Signature,
    SymDef,
)

A = ObjectAttributes
VECTORS = Path(
    os.environ.get("ATTEST_VECTORS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
)


def vector_dir(*parts: str) -> Path:
    path = VECTORS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"vectors not found at {path} (set ATTEST_VECTORS)")
    return path


def load_expected(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "expected.json").read_text())
    return data


def pcr_values(bank: str, pcrs: dict[str, str]) -> dict[tuple[str, int], bytes]:
    return {(bank, int(index)): bytes.fromhex(value) for index, value in pcrs.items()}


def b2(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def ecc_public(key: ec.EllipticCurvePublicKey, attributes: ObjectAttributes,
               *, scheme: Scheme, policy: bytes = b"") -> Public:
    numbers = key.public_numbers()
    return Public(Alg.ECC, "sha256", attributes, policy,
                  ECCParms(SymDef(), scheme, Curve.NIST_P256, Scheme(),
                           numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")))


AK_ATTRIBUTES = (A.FIXED_TPM | A.FIXED_PARENT | A.SENSITIVE_DATA_ORIGIN | A.USER_WITH_AUTH
                 | A.RESTRICTED | A.SIGN)
SIGNING_KEY_ATTRIBUTES = A.FIXED_TPM | A.FIXED_PARENT | A.SENSITIVE_DATA_ORIGIN | A.SIGN


@dataclass
class SoftTPM:
    """An ECDSA P-256 'AK' in software that lays out TPMS_ATTEST like a TPM does."""

    key: ec.EllipticCurvePrivateKey
    public: Public
    qualified_name: bytes = b"\x00\x0b" + bytes(range(32))

    def attest(self, kind: int, body: bytes, *, extra: bytes = b"", clock: int = 1000,
               resets: int = 7, restarts: int = 0, safe: int = 1,
               magic: int = 0xFF544347) -> bytes:
        return (struct.pack(">IH", magic, kind) + b2(self.qualified_name) + b2(extra)
                + struct.pack(">QIIB", clock, resets, restarts, safe)
                + struct.pack(">Q", 0x0001000200030004) + body)

    def quote(self, selection: PCRSelection, values: dict[tuple[str, int], bytes],
              **kwargs: Any) -> bytes:
        body = selection.marshal() + b2(composite_digest(selection, values, "sha256"))
        return self.attest(0x8018, body, **kwargs)

    def certify(self, name: bytes, **kwargs: Any) -> bytes:
        return self.attest(0x8017, b2(name) + b2(name), **kwargs)

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        return Signature(Alg.ECDSA, "sha256", r=r.to_bytes(32, "big"),
                         s=s.to_bytes(32, "big")).marshal()
