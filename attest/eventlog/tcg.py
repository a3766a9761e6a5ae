"""TCG PC Client boot event logs (``binary_bios_measurements``).

Two formats, both little-endian, as the TCG PC Client Platform Firmware Profile
(PFP) 1.06 defines them:

- legacy SHA-1 (section 10.2.1, ``TCG_PCClientPCREvent``): pcrIndex u32,
  eventType u32, a 20-byte SHA-1 digest, eventDataSize u32, event data;
- crypto-agile (section 10.2.2, ``TCG_PCR_EVENT2``): pcrIndex u32, eventType u32,
  a TPML_DIGEST_VALUES (count u32, then count x {hashAlg u16, digest}),
  eventSize u32, event data. Its first event is in the legacy format and is the
  Spec ID event (section 10.4.5.1, ``TCG_EfiSpecIDEvent``) that lists every
  algorithm in the log with its digest size, so a bank attest cannot compute
  (SM3, SHA3) is skipped by the size the log itself declares.

Every length is checked against the bytes that remain before anything is sliced,
and every count against what the Spec ID event allows, so a hostile log costs no
more memory than its own size and fails with :class:`EventLogError` only.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from attest.errors import EventLogError
from attest.eventlog.eventtypes import EventType, event_type_name
from attest.evidence.pcrs import DIGEST_SIZES, HASH_NAMES, PCR_COUNT

SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
# TPM 1.2 era Spec ID events (TCG EFI Platform 1.22): the log that follows is SHA-1.
LEGACY_SPEC_ID_SIGNATURES = (b"Spec ID Event00\x00", b"Spec ID Event02\x00")
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"

# Bounds that no real log comes near: the TCG algorithm registry has 8 hash
# algorithms, the largest digest is 64 bytes (SHA-512, SHA3-512).
MAX_ALGORITHMS = 16
MAX_DIGEST_SIZE = 64

_LEGACY_HEADER = struct.Struct("<II20sI")
_U32 = struct.Struct("<I")
_U32X3 = struct.Struct("<III")
_U16 = struct.Struct("<H")
_ALG_ENTRY = struct.Struct("<HH")
_SPEC_ID_FIXED = struct.Struct("<16sIBBBBI")


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One algorithm of the Spec ID event: its TPM_ALG_ID and its digest size."""

    alg_id: int
    digest_size: int

    @property
    def name(self) -> str | None:
        """The hashlib name when attest computes this hash, else None."""
        return HASH_NAMES.get(self.alg_id)


@dataclass(frozen=True, slots=True)
class SpecId:
    """The TCG_EfiSpecIDEvent that opens a crypto-agile log."""

    platform_class: int
    version: tuple[int, int, int]
    uintn_size: int
    algorithms: tuple[Algorithm, ...]
    vendor_info: bytes


@dataclass(frozen=True, slots=True)
class TcgEvent:
    """One event of a PC Client log.

    ``digests`` holds the banks attest computes, by hashlib name; the digests of
    other algorithms are kept in ``other_digests`` by TPM_ALG_ID, unused by replay.
    """

    index: int
    pcr: int
    event_type: int
    digests: Mapping[str, bytes]
    data: bytes
    other_digests: tuple[tuple[int, bytes], ...] = ()

    @property
    def type_name(self) -> str:
        return event_type_name(self.event_type)

    @property
    def extends(self) -> bool:
        # PFP 10.4.5: EV_NO_ACTION events are informational and never extended.
        return self.event_type != EventType.EV_NO_ACTION

    @property
    def startup_locality(self) -> int | None:
        """The TPM2_Startup locality, when this is a StartupLocality event (PFP 10.4.5.3)."""
        if (self.event_type == EventType.EV_NO_ACTION and self.pcr == 0
                and len(self.data) == len(STARTUP_LOCALITY_SIGNATURE) + 1
                and self.data.startswith(STARTUP_LOCALITY_SIGNATURE)):
            return self.data[-1]
        return None

    @property
    def hcrtm(self) -> bool:
        """True for the H-CRTM measurement event, which means PCR 0 started at locality 4."""
        return self.event_type == EventType.EV_EFI_HCRTM_EVENT and self.pcr == 0

    @property
    def label(self) -> str:
        """One line for reports: ``#12 PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION: \\EFI\\...``."""
        # content.py decodes events of this module: imported here to avoid a cycle.
        from attest.eventlog.content import describe

        return f"#{self.index} PCR {self.pcr} {self.type_name}: {describe(self)}"


@dataclass(frozen=True, slots=True)
class TcgLog:
    """A parsed boot log. ``spec_id`` is None for a legacy SHA-1 log."""

    spec_id: SpecId | None
    events: tuple[TcgEvent, ...]

    @property
    def crypto_agile(self) -> bool:
        return self.spec_id is not None

    @property
    def banks(self) -> tuple[str, ...]:
        """The banks attest can replay from this log, in the log's order."""
        if self.spec_id is None:
            return ("sha1",)
        return tuple(a.name for a in self.spec_id.algorithms if a.name is not None)


def parse_tcg(data: bytes) -> TcgLog:
    """Parse a PC Client boot log in either format, or raise :class:`EventLogError`.

    Zero padding after the last event (as in a log copied with the whole ACPI log
    area) is refused, not skipped: it can't be told from a truncated event.
    """
    view = memoryview(data)
    if not view:
        raise EventLogError("the boot event log is empty")
    first, offset = _legacy_event(view, 0, 0)
    if first.event_type == EventType.EV_NO_ACTION and first.data.startswith(b"Spec ID Event"):
        if first.data.startswith(SPEC_ID_SIGNATURE):
            spec_id = parse_spec_id(first)
            return TcgLog(spec_id, _agile_events(view, offset, first, spec_id))
        if not first.data.startswith(LEGACY_SPEC_ID_SIGNATURES):
            raise EventLogError(f"unknown Spec ID event signature {bytes(first.data[:16])!r}",
                                hint='a crypto-agile log starts with "Spec ID Event03"')
    events = [first]
    while offset < len(view):
        event, offset = _legacy_event(view, offset, len(events))
        events.append(event)
    return TcgLog(None, tuple(events))


def _legacy_event(view: memoryview, offset: int, index: int) -> tuple[TcgEvent, int]:
    end = offset + _LEGACY_HEADER.size
    if end > len(view):
        raise _truncated(index, offset, "event header")
    pcr, event_type, digest, size = _LEGACY_HEADER.unpack_from(view, offset)
    _check_pcr(pcr, event_type, index, offset)
    if size > len(view) - end:
        raise EventLogError(
            f"event #{index} at offset {offset} declares {size} bytes of data; "
            f"only {len(view) - end} remain")
    return TcgEvent(index, pcr, event_type, {"sha1": digest}, bytes(view[end:end + size])), \
        end + size


def parse_spec_id(event: TcgEvent) -> SpecId:
    """The TCG_EfiSpecIDEvent in a legacy-format event's data (PFP 10.4.5.1)."""
    data = event.data
    if event.pcr != 0 or any(event.digests["sha1"]):
        raise EventLogError("the Spec ID event must be on PCR 0 with a zero digest (PFP 10.4.5.1)")
    if len(data) < _SPEC_ID_FIXED.size:
        raise EventLogError(f"the Spec ID event is {len(data)} bytes, shorter than its header")
    _, platform_class, minor, major, errata, uintn, count = _SPEC_ID_FIXED.unpack_from(data)
    offset = _SPEC_ID_FIXED.size
    if not 1 <= count <= MAX_ALGORITHMS:
        raise EventLogError(f"the Spec ID event lists {count} algorithms; "
                            f"expected 1-{MAX_ALGORITHMS}")
    if offset + count * _ALG_ENTRY.size + 1 > len(data):
        raise EventLogError(f"the Spec ID event lists {count} algorithms but is too short for them")
    algorithms: list[Algorithm] = []
    for _ in range(count):
        alg_id, size = _ALG_ENTRY.unpack_from(data, offset)
        offset += _ALG_ENTRY.size
        name = HASH_NAMES.get(alg_id)
        if not 1 <= size <= MAX_DIGEST_SIZE:
            raise EventLogError(f"the Spec ID event gives algorithm 0x{alg_id:04x} a digest size "
                                f"of {size}; expected 1-{MAX_DIGEST_SIZE}")
        if name is not None and size != DIGEST_SIZES[name]:
            raise EventLogError(f"the Spec ID event gives {name} a digest size of {size}, "
                                f"not {DIGEST_SIZES[name]}")
        if any(a.alg_id == alg_id for a in algorithms):
            raise EventLogError(f"the Spec ID event lists algorithm 0x{alg_id:04x} twice")
        algorithms.append(Algorithm(alg_id, size))
    vendor_size = data[offset]
    offset += 1
    if offset + vendor_size != len(data):
        raise EventLogError(f"the Spec ID event's vendor info ({vendor_size} bytes) does not "
                            f"fill the remaining {len(data) - offset} bytes")
    return SpecId(platform_class, (major, minor, errata), uintn, tuple(algorithms),
                  bytes(data[offset:]))


def _agile_events(view: memoryview, offset: int, first: TcgEvent,
                  spec_id: SpecId) -> tuple[TcgEvent, ...]:
    sizes = {a.alg_id: a.digest_size for a in spec_id.algorithms}
    names = {a.alg_id: a.name for a in spec_id.algorithms}
    expected = len(sizes)
    events = [first]
    total = len(view)
    while offset < total:
        index = len(events)
        start = offset
        if offset + _U32X3.size > total:
            raise _truncated(index, offset, "event header")
        pcr, event_type, count = _U32X3.unpack_from(view, offset)
        _check_pcr(pcr, event_type, index, offset)
        # PFP 10.2.2: every event carries one digest per algorithm of the Spec ID event.
        if count != expected:
            raise EventLogError(f"event #{index} at offset {offset} has {count} digests; "
                                f"the Spec ID event lists {expected} algorithms")
        offset += _U32X3.size
        digests: dict[str, bytes] = {}
        others: list[tuple[int, bytes]] = []
        seen: set[int] = set()
        for _ in range(count):
            if offset + _U16.size > total:
                raise _truncated(index, start, "digest list")
            (alg_id,) = _U16.unpack_from(view, offset)
            offset += _U16.size
            size = sizes.get(alg_id)
            if size is None:
                raise EventLogError(f"event #{index} at offset {start} has a digest of "
                                    f"algorithm 0x{alg_id:04x}, which the Spec ID event "
                                    "does not list")
            if alg_id in seen:
                raise EventLogError(f"event #{index} at offset {start} has two digests of "
                                    f"algorithm 0x{alg_id:04x}")
            seen.add(alg_id)
            if offset + size > total:
                raise _truncated(index, start, "digest")
            value = bytes(view[offset:offset + size])
            offset += size
            name = names[alg_id]
            if name is None:
                others.append((alg_id, value))
            else:
                digests[name] = value
        if offset + _U32.size > total:
            raise _truncated(index, start, "event size")
        (size,) = _U32.unpack_from(view, offset)
        offset += _U32.size
        if size > total - offset:
            raise EventLogError(f"event #{index} at offset {start} declares {size} bytes of "
                                f"data; only {total - offset} remain")
        events.append(TcgEvent(index, pcr, event_type, digests,
                               bytes(view[offset:offset + size]), tuple(others)))
        offset += size
    return tuple(events)


def _check_pcr(pcr: int, event_type: int, index: int, offset: int) -> None:
    # Windows logs put informational EV_NO_ACTION events on "PCR" 0xffffffff;
    # those extend nothing, so only an extended event must name a real PCR.
    if pcr >= PCR_COUNT and event_type != EventType.EV_NO_ACTION:
        raise EventLogError(f"event #{index} at offset {offset} names PCR {pcr}; "
                            f"a PC Client TPM has PCRs 0-{PCR_COUNT - 1}")


def _truncated(index: int, offset: int, what: str) -> EventLogError:
    return EventLogError(f"the log ends inside the {what} of event #{index} (offset {offset})",
                         hint="the file is truncated or not a TCG PC Client event log")
