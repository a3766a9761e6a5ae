"""Event types of the TCG PC Client Platform Firmware Profile (PFP).

Values from the PFP specification, family 2.0, revision 1.06, section 10.4.1
"Event Types" (the EFI range also in the TCG EFI Platform Specification 1.22).
A value outside the table is still a valid event: it is shown by number.
"""

from __future__ import annotations

from enum import IntEnum


class EventType(IntEnum):
    EV_PREBOOT_CERT = 0x00000000
    EV_POST_CODE = 0x00000001
    EV_UNUSED = 0x00000002
    EV_NO_ACTION = 0x00000003
    EV_SEPARATOR = 0x00000004
    EV_ACTION = 0x00000005
    EV_EVENT_TAG = 0x00000006
    EV_S_CRTM_CONTENTS = 0x00000007
    EV_S_CRTM_VERSION = 0x00000008
    EV_CPU_MICROCODE = 0x00000009
    EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
    EV_TABLE_OF_DEVICES = 0x0000000B
    EV_COMPACT_HASH = 0x0000000C
    EV_IPL = 0x0000000D
    EV_IPL_PARTITION_DATA = 0x0000000E
    EV_NONHOST_CODE = 0x0000000F
    EV_NONHOST_CONFIG = 0x00000010
    EV_NONHOST_INFO = 0x00000011
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x00000012
    EV_POST_CODE2 = 0x00000013
    EV_EFI_EVENT_BASE = 0x80000000
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_GPT_EVENT2 = 0x8000000D
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2
    EV_EFI_SPDM_DEVICE_POLICY = 0x800000E3
    EV_EFI_SPDM_DEVICE_AUTHORITY = 0x800000E4


_NAMES: dict[int, str] = {member.value: member.name for member in EventType}


def event_type_name(value: int) -> str:
    """The PFP name of an event type, or its number in hex when the table lacks it."""
    return _NAMES.get(value) or f"0x{value:08x}"


# The event types whose data is a UEFI_VARIABLE_DATA (PFP 10.4.2 / 10.2.6).
VARIABLE_EVENTS = frozenset({
    EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
    EventType.EV_EFI_VARIABLE_BOOT,
    EventType.EV_EFI_VARIABLE_BOOT2,
    EventType.EV_EFI_VARIABLE_AUTHORITY,
})

# The event types whose data is a UEFI_IMAGE_LOAD_EVENT (PFP 10.2.3).
IMAGE_EVENTS = frozenset({
    EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
    EventType.EV_EFI_BOOT_SERVICES_DRIVER,
    EventType.EV_EFI_RUNTIME_SERVICES_DRIVER,
})

# The event types whose data is plain text (ASCII, sometimes NUL-terminated).
TEXT_EVENTS = frozenset({
    EventType.EV_ACTION,
    EventType.EV_EFI_ACTION,
    EventType.EV_IPL,
    EventType.EV_POST_CODE,
    EventType.EV_S_CRTM_VERSION,
    EventType.EV_S_CRTM_CONTENTS,
    EventType.EV_EFI_HCRTM_EVENT,
    EventType.EV_OMIT_BOOT_DEVICE_EVENTS,
    EventType.EV_COMPACT_HASH,
})
