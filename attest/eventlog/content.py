"""What a boot event's data says, by event type: for appraisal and for people.

``variable_of`` and ``image_of`` are strict (appraisal relies on them) and raise
:class:`EventLogError`; ``describe`` never raises, because a quirky event (a
zero-length SecureBoot variable, an odd S-CRTM version string) must not stop a
log from being shown or replayed: its digest, not its data, is what was extended.
"""

from __future__ import annotations

import struct

from attest.errors import EventLogError
from attest.eventlog import efi
from attest.eventlog.eventtypes import IMAGE_EVENTS, TEXT_EVENTS, VARIABLE_EVENTS, EventType
from attest.eventlog.tcg import SPEC_ID_SIGNATURE, TcgEvent, parse_spec_id

SEPARATOR_NORMAL = b"\x00\x00\x00\x00"
# PFP 1.06 uses 0x00000001 for an error separator; older TCG EFI logs use 0xffffffff.
SEPARATOR_ERRORS = (b"\x01\x00\x00\x00", b"\xff\xff\xff\xff")


def variable_of(event: TcgEvent) -> efi.VariableData:
    if event.event_type not in VARIABLE_EVENTS:
        raise EventLogError(f"event #{event.index} ({event.type_name}) is not a UEFI variable")
    try:
        return efi.parse_variable_data(event.data)
    except EventLogError as exc:
        raise EventLogError(f"event #{event.index} ({event.type_name}): {exc.message}") from None


def image_of(event: TcgEvent) -> efi.ImageLoad:
    if event.event_type not in IMAGE_EVENTS:
        raise EventLogError(f"event #{event.index} ({event.type_name}) is not an image load")
    try:
        return efi.parse_image_load(event.data)
    except EventLogError as exc:
        raise EventLogError(f"event #{event.index} ({event.type_name}): {exc.message}") from None


def describe(event: TcgEvent) -> str:
    """One line saying what the event records; ``(undecodable: ...)`` when its data is off."""
    try:
        return _describe(event)
    except EventLogError as exc:
        return f"(undecodable: {exc.message})"


def _describe(event: TcgEvent) -> str:
    kind = event.event_type
    data = event.data
    if kind == EventType.EV_NO_ACTION:
        return _no_action(event)
    if kind in VARIABLE_EVENTS:
        var = efi.parse_variable_data(data)
        return f"{var.qualified_name} = {_short_hex(var.data)}"
    if kind in IMAGE_EVENTS:
        image = efi.parse_image_load(data)
        return image.file_path or image.path or \
            f"image at 0x{image.location:x} ({image.length} bytes)"
    if kind == EventType.EV_SEPARATOR:
        if data == SEPARATOR_NORMAL:
            return "separator"
        if data in SEPARATOR_ERRORS:
            return "separator (error)"
        return f"separator {_short_hex(data)}"
    if kind == EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB or (
            kind == EventType.EV_POST_CODE and len(data) == 16):
        blob = efi.parse_firmware_blob(data)
        return f"firmware blob at 0x{blob.base:x}, {blob.length} bytes"
    if kind == EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2:
        blob = efi.parse_firmware_blob2(data)
        return f"{blob.description}: firmware blob at 0x{blob.base:x}, {blob.length} bytes"
    if kind in (EventType.EV_EFI_GPT_EVENT, EventType.EV_EFI_GPT_EVENT2):
        return _gpt(data)
    if kind == EventType.EV_EFI_HANDOFF_TABLES:
        return _handoff_tables(data)
    if kind in TEXT_EVENTS:
        return efi.text(data)
    return efi.text(data) if data else ""


def _no_action(event: TcgEvent) -> str:
    data = event.data
    if data.startswith(SPEC_ID_SIGNATURE):
        spec = parse_spec_id(event)
        algs = ", ".join(a.name or f"0x{a.alg_id:04x} ({a.digest_size} bytes, not replayed)"
                         for a in spec.algorithms)
        return f"Spec ID Event03 (PFP {'.'.join(map(str, spec.version))}): {algs}"
    locality = event.startup_locality
    if locality is not None:
        return f"StartupLocality {locality}"
    # Other informational events (SP800-155 Event, NvIndexInstance, ...) open with
    # a NUL-terminated ASCII signature: name them by it.
    signature = data[:24].split(b"\x00", 1)[0]
    if signature and signature.isascii() and signature.decode().isprintable():
        return signature.decode()
    return efi.text(data) if data else ""


def _gpt(data: bytes) -> str:
    # UEFI_GPT_DATA (PFP 10.2.7): the EFI_PARTITION_TABLE_HEADER, then a UINT64 count
    # and the partition entries; the header's own size sits at offset 12.
    if len(data) < 92 or data[:8] != b"EFI PART":
        raise EventLogError("GPT event data does not start with an EFI partition table header")
    (header_size,) = struct.unpack_from("<I", data, 12)
    if not 92 <= header_size <= len(data) - 8:
        raise EventLogError(f"GPT header size {header_size} does not fit the event data")
    disk = efi.guid_text(data[56:72])
    (count,) = struct.unpack_from("<Q", data, header_size)
    return f"GPT disk {disk}, {count} partitions"


def _handoff_tables(data: bytes) -> str:
    # UEFI_HANDOFF_TABLE_POINTERS (PFP 10.2.4): UINT64 count, then {GUID, pointer} pairs.
    if len(data) < 8:
        raise EventLogError("handoff table event shorter than its count")
    (count,) = struct.unpack_from("<Q", data)
    if count > (len(data) - 8) // 24:
        raise EventLogError(f"handoff table event declares {count} tables in {len(data)} bytes")
    guids = [efi.guid_text(data[8 + 24 * i:24 + 24 * i]) for i in range(count)]
    return f"{count} tables: {', '.join(guids)}"


def _short_hex(data: bytes, limit: int = 32) -> str:
    if not data:
        return "(empty)"
    return data[:limit].hex() + ("..." if len(data) > limit else "")
