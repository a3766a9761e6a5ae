"""Parsing PC Client boot logs: both formats, their quirks, and every way they can be broken."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from attest.errors import EventLogError
from attest.eventlog.content import describe, image_of, variable_of
from attest.eventlog.efi import EFI_GLOBAL_VARIABLE
from attest.eventlog.eventtypes import EventType, event_type_name
from attest.eventlog.tcg import parse_tcg
from tests.eventlog.conftest import load_vector, require_vectors
from tests.eventlog.logbuilder import (
    EV_EFI_ACTION,
    EV_NO_ACTION,
    EV_SEPARATOR,
    SHA1,
    SHA256,
    SM3,
    agile_event,
    agile_log,
    legacy_event,
    spec_id,
)

SEPARATOR = b"\x00\x00\x00\x00"


def test_crypto_agile_log_keeps_every_bank_and_the_spec_id() -> None:
    log = parse_tcg(agile_log([(0, EV_EFI_ACTION, b"hello"), (7, EV_SEPARATOR, SEPARATOR)]))
    assert log.crypto_agile and log.banks == ("sha1", "sha256")
    assert [e.index for e in log.events] == [0, 1, 2]
    first = log.events[1]
    assert (first.pcr, first.type_name, first.data) == (0, "EV_EFI_ACTION", b"hello")
    assert set(first.digests) == {"sha1", "sha256"}


def test_legacy_log_is_sha1_only() -> None:
    log = parse_tcg(legacy_event(0, EV_EFI_ACTION, b"a") + legacy_event(4, EV_SEPARATOR, SEPARATOR))
    assert not log.crypto_agile and log.banks == ("sha1",)
    assert [e.pcr for e in log.events] == [0, 4]


def test_a_tpm12_spec_id_event_opens_a_sha1_log() -> None:
    opening = spec_id([], signature=b"Spec ID Event00\x00")
    log = parse_tcg(opening + legacy_event(0, EV_EFI_ACTION, b"a"))
    assert not log.crypto_agile and len(log.events) == 2


def test_a_bank_attest_does_not_compute_is_skipped_by_its_declared_size() -> None:
    log = parse_tcg(agile_log([(0, EV_EFI_ACTION, b"x")], algorithms=(SHA1, SM3, SHA256)))
    assert log.banks == ("sha1", "sha256")
    event = log.events[1]
    assert set(event.digests) == {"sha1", "sha256"}
    assert [alg for alg, _ in event.other_digests] == [SM3]


def test_digests_may_come_in_another_order_than_the_spec_id_lists() -> None:
    data = spec_id([(SHA1, 20), (SHA256, 32)]) + agile_event(0, EV_EFI_ACTION, b"x", [SHA256, SHA1])
    assert set(parse_tcg(data).events[1].digests) == {"sha1", "sha256"}


def test_zero_padding_after_the_last_event_is_refused_like_a_truncated_event() -> None:
    with pytest.raises(EventLogError, match=r"event #2 at offset \d+ has 0 digests"):
        parse_tcg(agile_log([(0, EV_EFI_ACTION, b"x")]) + bytes(300))


def test_informational_events_may_name_no_real_pcr() -> None:
    # Windows logs put EV_NO_ACTION events on PCR 0xffffffff.
    log = parse_tcg(agile_log([(0xFFFFFFFF, EV_NO_ACTION, b"WBCL")]))
    assert not log.events[1].extends


def test_event_types_are_named_by_the_pfp_table() -> None:
    assert event_type_name(0x80000010) == "EV_EFI_HCRTM_EVENT"
    assert event_type_name(0x0000000D) == "EV_IPL"
    assert event_type_name(0x800000E0) == "EV_EFI_VARIABLE_AUTHORITY"
    assert event_type_name(0x12345678) == "0x12345678"
    assert len(EventType) >= 40


ALGS = [(SHA1, 20), (SHA256, 32)]
GOOD_EVENT = agile_event(0, EV_EFI_ACTION, b"x", [SHA1, SHA256])


def _agile_header(pcr: int = 0, kind: int = EV_EFI_ACTION, count: int = 2) -> bytes:
    return struct.pack("<III", pcr, kind, count)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "truncated legacy header": (legacy_event(0, 1, b"abc")[:20], "ends inside"),
    "legacy event size beyond the end": (
        struct.pack("<II20sI", 0, 1, bytes(20), 0xFFFFFFFF) + b"abc", "4294967295 bytes"),
    "agile event size beyond the end": (
        spec_id(ALGS) + GOOD_EVENT[:-5] + struct.pack("<I", 0x7FFFFFFF), "2147483647 bytes"),
    "digest count beyond the spec id": (
        spec_id(ALGS) + _agile_header(count=3) + GOOD_EVENT[12:], "3 digests"),
    "absurd digest count": (
        spec_id(ALGS) + _agile_header(count=0xFFFFFFFF) + GOOD_EVENT[12:], "4294967295 digests"),
    "too few digests": (
        spec_id(ALGS) + agile_event(0, EV_EFI_ACTION, b"x", [SHA1]), "1 digests"),
    "unknown algorithm in an event": (
        spec_id(ALGS) + GOOD_EVENT.replace(struct.pack("<H", SHA256), b"\x99\x00", 1),
        "0x0099"),
    "the same algorithm twice": (
        spec_id(ALGS) + _agile_header() + struct.pack("<H", SHA1) + bytes(20)
        + struct.pack("<H", SHA1) + bytes(20) + struct.pack("<I", 0), "two digests"),
    "truncated digest": (spec_id(ALGS) + GOOD_EVENT[:30], "ends inside the digest"),
    "pcr out of range": (spec_id(ALGS) + agile_event(24, EV_EFI_ACTION, b"x", [SHA1, SHA256]),
                         "PCR 24"),
    "spec id with no algorithms": (spec_id([]), "0 algorithms"),
    "spec id with absurd algorithm count": (
        legacy_event(0, EV_NO_ACTION, b"Spec ID Event03\x00"
                     + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 0xFFFFFFFF) + b"\x00", bytes(20)),
        "4294967295 algorithms"),
    "spec id shorter than its algorithm list": (
        legacy_event(0, EV_NO_ACTION, b"Spec ID Event03\x00"
                     + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 5) + b"\x04\x00\x14\x00", bytes(20)),
        "too short"),
    "spec id with a wrong sha256 size": (spec_id([(SHA256, 20)]), "sha256 a digest size of 20"),
    "spec id with a zero digest size": (spec_id([(0x0027, 0)]), "digest size of 0"),
    "spec id with an absurd digest size": (spec_id([(0x0027, 0xFFFF)]), "65535"),
    "spec id listing an algorithm twice": (spec_id([(SHA1, 20), (SHA1, 20)]), "twice"),
    "spec id vendor info beyond the end": (
        spec_id(ALGS)[:-1] + b"\x40", "vendor info"),
    "wrong spec id signature": (
        spec_id(ALGS, signature=b"Spec ID Event04\x00"), "unknown Spec ID"),
    "spec id on pcr 1": (spec_id(ALGS).replace(b"\x00", b"\x01", 1), "PCR 0"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_logs_raise_a_log_error_naming_the_fault(case: str) -> None:
    data, words = MALFORMED[case]
    with pytest.raises(EventLogError) as caught:
        parse_tcg(data)
    assert words in caught.value.message
    assert caught.value.reason == "eventlog_malformed"
    assert caught.value.exit_code == 1  # evidence refused, not bad usage


def test_absurd_sizes_allocate_nothing_large() -> None:
    hostile = [MALFORMED[c][0] for c in ("legacy event size beyond the end",
                                         "agile event size beyond the end",
                                         "absurd digest count",
                                         "spec id with absurd algorithm count")]
    tracemalloc.start()
    try:
        for data in hostile:
            with pytest.raises(EventLogError):
                parse_tcg(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_every_truncation_of_a_log_parses_or_raises_the_log_error() -> None:
    data = agile_log([(0, EV_EFI_ACTION, b"Calling EFI Application"), (7, EV_SEPARATOR, SEPARATOR),
                      (4, EV_EFI_ACTION, b"x" * 40)], algorithms=(SHA1, SM3, SHA256))
    boundaries = 0
    for cut in range(1, len(data)):
        try:
            parse_tcg(data[:cut])
            boundaries += 1
        except EventLogError:
            pass
    assert boundaries == 3  # after the Spec ID event and after each of the first two events


def test_secure_boot_variable_decodes_to_guid_name_and_value() -> None:
    require_vectors()
    events = parse_tcg(load_vector("ga_sb_cert_all24").log).events
    variable = variable_of(events[2])
    assert (variable.guid, variable.name, variable.data) == (EFI_GLOBAL_VARIABLE, "SecureBoot",
                                                            b"\x01")
    assert describe(events[2]) == "SecureBoot = 01"


def test_boot_application_decodes_to_its_file_path() -> None:
    require_vectors()
    events = parse_tcg(load_vector("ga_sb_cert_all24").log).events
    image = image_of(events[10])
    assert image.file_path == "\\EFI\\BOOT\\BOOTX64.EFI"
    assert image.path.startswith("PciRoot(0x0)/Pci(0x3,0x0)/")
    assert "/HD(15,GPT,27872a8b-87fc-49c2-bf27-3afc4cf84586)/\\EFI\\BOOT\\BOOTX64.EFI" in image.path


def test_separators_and_actions_describe_themselves() -> None:
    log = parse_tcg(agile_log([(5, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
                               (7, EV_SEPARATOR, SEPARATOR), (7, EV_SEPARATOR, b"\xff" * 4)]))
    assert [describe(e) for e in log.events[1:]] == [
        "Exit Boot Services Invocation", "separator", "separator (error)"]
    assert describe(log.events[0]).startswith("Spec ID Event03")


def test_undecodable_event_data_is_shown_not_raised() -> None:
    # A UEFI_VARIABLE_DATA whose name length runs past the end of the event.
    bad = bytes(16) + struct.pack("<QQ", 2**62, 0)
    log = parse_tcg(agile_log([(7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, bad)]))
    assert describe(log.events[1]).startswith("(undecodable:")
    with pytest.raises(EventLogError, match="event #1"):
        variable_of(log.events[1])
