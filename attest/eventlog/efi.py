"""UEFI structures found in boot event data, decoded with every length checked.

Layouts from the TCG PC Client Platform Firmware Profile 1.06 (section 10.2.3
UEFI_IMAGE_LOAD_EVENT, 10.2.6 UEFI_VARIABLE_DATA, 10.2.5 UEFI_PLATFORM_FIRMWARE_BLOB)
and the UEFI Specification 2.10 (chapter 10 "Device Path Protocol", and
appendix A for GUID byte order). All integers are little-endian.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from attest.errors import EventLogError

# EFI_GLOBAL_VARIABLE (UEFI 2.10, 3.3): SecureBoot, PK, KEK, Boot####, BootOrder.
EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
# EFI_IMAGE_SECURITY_DATABASE_GUID (UEFI 2.10, 32.6.1): db, dbx.
EFI_IMAGE_SECURITY_DATABASE = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"

_VARIABLE_HEADER = struct.Struct("<16sQQ")
_IMAGE_HEADER = struct.Struct("<QQQQ")
_NODE_HEADER = struct.Struct("<BBH")
_BLOB = struct.Struct("<QQ")

# A device path longer than this is not a boot path but an attempt at a slow decode.
MAX_DEVICE_PATH_NODES = 256


def guid_text(raw: bytes) -> str:
    """An EFI_GUID (first three fields little-endian) in its registry form."""
    if len(raw) != 16:
        raise EventLogError(f"a GUID is 16 bytes, not {len(raw)}")
    return str(uuid.UUID(bytes_le=bytes(raw)))


@dataclass(frozen=True, slots=True)
class VariableData:
    """UEFI_VARIABLE_DATA: a measured UEFI variable."""

    guid: str
    name: str
    data: bytes

    @property
    def qualified_name(self) -> str:
        """``SecureBoot`` (global namespace), ``db`` (security database), else ``GUID:name``."""
        if self.guid in (EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE):
            return self.name
        return f"{self.guid}:{self.name}"


def parse_variable_data(data: bytes) -> VariableData:
    if len(data) < _VARIABLE_HEADER.size:
        raise EventLogError(f"UEFI_VARIABLE_DATA is {len(data)} bytes, shorter than its "
                            f"{_VARIABLE_HEADER.size}-byte header")
    raw_guid, name_chars, data_size = _VARIABLE_HEADER.unpack_from(data)
    remaining = len(data) - _VARIABLE_HEADER.size
    # Compare counts with the remaining size before multiplying or slicing.
    if name_chars > remaining // 2 or data_size > remaining - 2 * name_chars:
        raise EventLogError(f"UEFI_VARIABLE_DATA declares a {name_chars}-character name and "
                            f"{data_size} bytes of data; only {remaining} bytes remain")
    start = _VARIABLE_HEADER.size
    name = _utf16(data[start:start + 2 * name_chars], "variable name")
    value_start = start + 2 * name_chars
    return VariableData(guid_text(raw_guid), name, bytes(data[value_start:value_start + data_size]))


@dataclass(frozen=True, slots=True)
class DevicePathNode:
    """One EFI_DEVICE_PATH_PROTOCOL node; ``text`` is its readable form."""

    type: int
    subtype: int
    body: bytes
    text: str

    @property
    def is_file_path(self) -> bool:
        return self.type == 0x04 and self.subtype == 0x04


@dataclass(frozen=True, slots=True)
class ImageLoad:
    """UEFI_IMAGE_LOAD_EVENT: a PE image the firmware loaded and measured."""

    location: int
    length: int
    link_time_address: int
    device_path: tuple[DevicePathNode, ...]

    @property
    def path(self) -> str:
        """The device path in UEFI text form, e.g. ``PciRoot(0x0)/.../HD(1,GPT,...)/...``."""
        return "/".join(node.text for node in self.device_path)

    @property
    def file_path(self) -> str | None:
        r"""Only the file part (``\EFI\BOOT\BOOTX64.EFI``); None when no file node is present."""
        parts = [node.text for node in self.device_path if node.is_file_path]
        if not parts:
            return None
        # Firmware may split one path over several file-path nodes, one per directory.
        joined = parts[0]
        for part in parts[1:]:
            if joined.endswith("\\") or part.startswith("\\"):
                joined += part
            else:
                joined += "\\" + part
        return joined


def parse_image_load(data: bytes) -> ImageLoad:
    if len(data) < _IMAGE_HEADER.size:
        raise EventLogError(f"UEFI_IMAGE_LOAD_EVENT is {len(data)} bytes, shorter than its "
                            f"{_IMAGE_HEADER.size}-byte header")
    location, length, link_address, path_size = _IMAGE_HEADER.unpack_from(data)
    remaining = len(data) - _IMAGE_HEADER.size
    if path_size > remaining:
        raise EventLogError(f"UEFI_IMAGE_LOAD_EVENT declares a {path_size}-byte device path; "
                            f"only {remaining} bytes remain")
    start = _IMAGE_HEADER.size
    nodes = parse_device_path(data[start:start + path_size])
    return ImageLoad(location, length, link_address, nodes)


def parse_device_path(data: bytes) -> tuple[DevicePathNode, ...]:
    """Nodes up to the end-of-path node (type 0x7f, subtype 0xff)."""
    nodes: list[DevicePathNode] = []
    offset = 0
    while offset < len(data):
        if offset + _NODE_HEADER.size > len(data):
            raise EventLogError(f"device path ends inside a node header at offset {offset}")
        node_type, subtype, size = _NODE_HEADER.unpack_from(data, offset)
        if size < _NODE_HEADER.size or size > len(data) - offset:
            raise EventLogError(f"device path node at offset {offset} declares {size} bytes; "
                                f"{len(data) - offset} remain")
        if node_type == 0x7F and subtype == 0xFF:
            break
        if len(nodes) >= MAX_DEVICE_PATH_NODES:
            raise EventLogError(f"device path has more than {MAX_DEVICE_PATH_NODES} nodes")
        body = bytes(data[offset + _NODE_HEADER.size:offset + size])
        nodes.append(DevicePathNode(node_type, subtype, body, _node_text(node_type, subtype, body)))
        offset += size
    return tuple(nodes)


# PNP0A03 / PNP0A08 in EISA compressed form: the PCI root bridge (UEFI 2.10, 10.3.3).
_PCI_ROOT_HIDS = (0x0A0341D0, 0x0A0841D0)
_MESSAGING_NAMES = {0x01: "Ata", 0x02: "Scsi", 0x05: "USB", 0x0B: "MAC", 0x0C: "IPv4",
                    0x0D: "IPv6", 0x12: "Sata", 0x17: "NVMe", 0x18: "Uri", 0x1A: "SD",
                    0x1D: "eMMC", 0x0A: "VenMsg"}


def _node_text(node_type: int, subtype: int, body: bytes) -> str:
    """UEFI text form of the nodes boot logs carry; others as ``Path(type,subtype)``."""
    if node_type == 0x04 and subtype == 0x04:  # media: file path, a NUL-terminated UCS-2 string
        return _utf16(body, "file path")
    if node_type == 0x04 and subtype == 0x01 and len(body) >= 38:  # media: hard drive
        number, _, _, signature, fmt, sig_type = struct.unpack_from("<IQQ16sBB", body)
        kind = {1: "MBR", 2: "GPT"}.get(fmt, str(fmt))
        ident = guid_text(signature) if sig_type == 2 else signature[:4][::-1].hex()
        return f"HD({number},{kind},{ident})"
    # PIWG firmware file / firmware volume
    if node_type == 0x04 and subtype in (0x06, 0x07) and len(body) >= 16:
        return f"{'FvFile' if subtype == 0x06 else 'Fv'}({guid_text(body[:16])})"
    if node_type == 0x04 and subtype == 0x08 and len(body) >= 20:  # media: relative offset range
        start, end = struct.unpack_from("<QQ", body, 4)
        return f"Offset(0x{start:x},0x{end:x})"
    if node_type == 0x04 and subtype == 0x03 and len(body) >= 16:
        return f"VenMedia({guid_text(body[:16])})"
    if node_type == 0x01 and subtype == 0x01 and len(body) >= 2:
        return f"Pci(0x{body[1]:x},0x{body[0]:x})"
    if node_type == 0x02 and subtype == 0x01 and len(body) >= 8:
        hid, uid = struct.unpack_from("<II", body)
        if hid in _PCI_ROOT_HIDS:
            return f"PciRoot(0x{uid:x})"
        return f"Acpi(0x{hid:08x},0x{uid:x})"
    if node_type == 0x03 and subtype in _MESSAGING_NAMES:
        return f"{_MESSAGING_NAMES[subtype]}({body.hex()})"
    return f"Path({node_type},{subtype})"


@dataclass(frozen=True, slots=True)
class FirmwareBlob:
    """UEFI_PLATFORM_FIRMWARE_BLOB(2): a region of firmware that was measured."""

    base: int
    length: int
    description: str | None = None


def parse_firmware_blob(data: bytes) -> FirmwareBlob:
    if len(data) != _BLOB.size:
        raise EventLogError(f"UEFI_PLATFORM_FIRMWARE_BLOB is {_BLOB.size} bytes, not {len(data)}")
    base, length = _BLOB.unpack_from(data)
    return FirmwareBlob(base, length)


def parse_firmware_blob2(data: bytes) -> FirmwareBlob:
    if not data:
        raise EventLogError("UEFI_PLATFORM_FIRMWARE_BLOB2 is empty")
    size = data[0]
    if 1 + size + _BLOB.size != len(data):
        raise EventLogError(f"UEFI_PLATFORM_FIRMWARE_BLOB2 declares a {size}-byte description "
                            f"in {len(data)} bytes")
    base, length = _BLOB.unpack_from(data, 1 + size)
    return FirmwareBlob(base, length, text(data[1:1 + size]))


def _utf16(raw: bytes, what: str) -> str:
    if len(raw) % 2:
        raise EventLogError(f"the {what} has an odd number of bytes for UTF-16")
    try:
        return bytes(raw).decode("utf-16-le").split("\x00", 1)[0]
    except UnicodeDecodeError:
        raise EventLogError(f"the {what} is not valid UTF-16") from None


def text(raw: bytes) -> str:
    """Best-effort text of event data: UTF-16LE when it looks like it, else UTF-8, else hex.

    Firmware writes strings both ways (EV_S_CRTM_VERSION is often UCS-2, EV_EFI_ACTION
    ASCII; systemd-stub logs EV_IPL descriptions in UTF-16), always maybe NUL-terminated.
    Never raises: this is for display, not for appraisal.
    """
    data = bytes(raw)
    # A UTF-16 string followed by a one-byte NUL is common too (odd length).
    wide = data[:-1] if len(data) % 2 and data.endswith(b"\x00") else data
    if len(wide) >= 2 and len(wide) % 2 == 0 and not any(wide[1::2]):
        candidate = wide.decode("utf-16-le", errors="replace")
    else:
        try:
            candidate = data.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(data)} bytes: {data[:32].hex()}{'...' if len(data) > 32 else ''}>"
    candidate = candidate.rstrip("\x00")
    if all(ch.isprintable() or ch in "\n\r\t" for ch in candidate):
        return candidate.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return f"<{len(data)} bytes: {data[:32].hex()}{'...' if len(data) > 32 else ''}>"
