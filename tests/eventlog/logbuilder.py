"""Build PC Client event logs byte by byte, for tests that need a precise shape."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

SHA1, SHA256, SM3 = 0x0004, 0x000B, 0x0012
SIZES = {SHA1: 20, SHA256: 32, 0x000C: 48, 0x000D: 64, SM3: 32}
EV_NO_ACTION, EV_SEPARATOR, EV_EFI_ACTION = 0x3, 0x4, 0x80000007


def legacy_event(pcr: int, event_type: int, data: bytes, digest: bytes | None = None) -> bytes:
    # SHA-1 because the legacy format is SHA-1: this is the format, not a security choice.
    value = hashlib.sha1(data).digest() if digest is None else digest  # noqa: S324
    return struct.pack("<II20sI", pcr, event_type, value, len(data)) + data


def spec_id(algorithms: Sequence[tuple[int, int]], vendor: bytes = b"",
            signature: bytes = b"Spec ID Event03\x00") -> bytes:
    """The legacy-format Spec ID event that opens a crypto-agile log."""
    body = signature + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algorithms))
    body += b"".join(struct.pack("<HH", alg, size) for alg, size in algorithms)
    body += bytes([len(vendor)]) + vendor
    return legacy_event(0, EV_NO_ACTION, body, digest=bytes(20))


def agile_event(pcr: int, event_type: int, data: bytes, algorithms: Sequence[int],
                digests: dict[int, bytes] | None = None) -> bytes:
    out = struct.pack("<III", pcr, event_type, len(algorithms))
    for alg in algorithms:
        if digests and alg in digests:
            value = digests[alg]
        elif alg == SM3:
            value = hashlib.sha256(b"sm3 stand-in" + data).digest()
        else:
            value = hashlib.new({SHA1: "sha1", SHA256: "sha256"}[alg], data).digest()
        out += struct.pack("<H", alg) + value
    return out + struct.pack("<I", len(data)) + data


def agile_log(events: Sequence[tuple[int, int, bytes]],
              algorithms: Sequence[int] = (SHA1, SHA256)) -> bytes:
    """A crypto-agile log: a Spec ID event, then ``(pcr, type, data)`` events hashed per bank."""
    out = spec_id([(alg, SIZES[alg]) for alg in algorithms])
    for pcr, event_type, data in events:
        out += agile_event(pcr, event_type, data, algorithms)
    return out


def extend(value: bytes, data: bytes, name: str) -> bytes:
    return hashlib.new(name, value + hashlib.new(name, data).digest()).digest()
