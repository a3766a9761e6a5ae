"""Reference values: allowed boot state and runtime measurements, and the record at fault."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from typing import Any

import pytest

from attest.errors import EventLogMismatch, MalformedInput, ReferenceValueMismatch
from attest.eventlog.appraise import AppraisalFacts, ReferenceValues, appraise
from attest.eventlog.cel import (
    CelRecord,
    attest_record,
    encode_record,
    measurement_content,
    parse_cel,
)
from attest.eventlog.eventtypes import EventType
from attest.eventlog.replay import replay
from attest.eventlog.tcg import TcgEvent, parse_tcg
from tests.eventlog.conftest import load_vector, require_vectors

BANKS = ["sha1", "sha256"]
BACKUP = hashlib.sha256(b"backup v1").digest()
# Every PCR quoted: what these tests of the appraisal rules themselves assume.
ALL_PCRS = frozenset(range(24))


def _appraise(events: Sequence[TcgEvent | CelRecord], reference: ReferenceValues, *,
              covered: Collection[int] = ALL_PCRS) -> AppraisalFacts:
    return appraise(events, reference, covered=covered)



def _runtime(name: str = "/usr/bin/backup", digest: bytes = BACKUP) -> CelRecord:
    content = measurement_content("file", name, {"sha256": digest}, path=name)
    return attest_record(0, 14, content, BANKS)


def _reference(**sections: Any) -> ReferenceValues:
    return ReferenceValues.from_dict(sections)


def _boot(name: str) -> tuple[TcgEvent, ...]:
    require_vectors()
    return parse_tcg(load_vector(name).log).events


def test_allowed_runtime_measurement_is_a_fact() -> None:
    reference = _reference(runtime=[{"name": "/usr/bin/backup", "digests": [BACKUP.hex()]}])
    facts = _appraise([_runtime()], reference)
    assert facts.runtime == (("/usr/bin/backup", BACKUP.hex()),)
    assert facts.secure_boot is None and facts.boot_pcrs is None


def test_runtime_measurement_with_another_digest_is_a_reference_mismatch() -> None:
    reference = _reference(runtime=[{"name": "/usr/bin/backup", "digests": [BACKUP.hex()]}])
    other = hashlib.sha256(b"backup v2").digest()
    with pytest.raises(ReferenceValueMismatch) as caught:
        _appraise([_runtime(digest=other)], reference)
    assert caught.value.reason == "reference_value_mismatch"
    assert "record 0 PCR 14" in caught.value.message and other.hex() in caught.value.message


def test_runtime_measurement_without_a_reference_value_is_a_mismatch() -> None:
    reference = _reference(runtime=[])
    with pytest.raises(ReferenceValueMismatch, match="no reference value for '/usr/bin/backup'"):
        _appraise([_runtime()], reference)


def test_an_edited_record_is_an_eventlog_mismatch() -> None:
    record = _runtime()
    forged = CelRecord(record.index, record.recnum, record.pcr, record.digests,
                       record.content_type, dict(record.content, name="/usr/bin/ls"))
    reference = _reference(runtime=[{"name": "/usr/bin/ls", "digests": [BACKUP.hex()]}])
    with pytest.raises(EventLogMismatch) as caught:
        _appraise([forged], reference)
    assert caught.value.reason == "eventlog_mismatch" and "altered" in caught.value.message


def test_secure_boot_on_is_a_fact() -> None:
    facts = _appraise(_boot("ga_sb_cert_all24"), _reference(boot={"secure_boot": True}))
    assert facts.secure_boot is True


def test_secure_boot_off_is_a_reference_mismatch_naming_the_event() -> None:
    events = _boot("ga_ebs_event_missing_NEGATIVE")
    with pytest.raises(ReferenceValueMismatch, match=r"#2 PCR 7 .*Secure Boot is off"):
        _appraise(events, _reference(bank="sha1", boot={"secure_boot": True}))


def test_an_empty_secure_boot_variable_counts_as_off() -> None:
    events = _boot("gtt_arch_linux_workstation")
    with pytest.raises(ReferenceValueMismatch, match="SecureBoot = empty"):
        _appraise(events, _reference(boot={"secure_boot": True}))


def test_a_secure_boot_variable_edited_to_on_is_an_eventlog_mismatch() -> None:
    # The firmware measured SecureBoot = 00; the log now claims 01 under the same digest.
    events = list(_boot("ga_ebs_event_missing_NEGATIVE"))
    original = events[2]
    events[2] = TcgEvent(original.index, original.pcr, original.event_type, original.digests,
                         original.data[:-1] + b"\x01", original.other_digests)
    with pytest.raises(EventLogMismatch, match="does not hash to the sha1 digest"):
        _appraise(events, _reference(bank="sha1", boot={"secure_boot": True}))


def test_boot_applications_are_checked_against_their_digests() -> None:
    events = _boot("ga_sb_cert_all24")
    apps = [e for e in events if e.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"]
    allowed = [e.digests["sha256"].hex() for e in apps]
    facts = _appraise(events, _reference(boot={"boot_applications": allowed}))
    assert facts.boot_applications is not None
    assert facts.boot_applications[0] == ("\\EFI\\BOOT\\BOOTX64.EFI", allowed[0])
    with pytest.raises(ReferenceValueMismatch, match=r"#10 PCR 4 boot application "
                                                     r"\\EFI\\BOOT\\BOOTX64.EFI"):
        _appraise(events, _reference(boot={"boot_applications": allowed[1:]}))


def test_boot_pcr_values_are_checked_against_the_allowed_ones() -> None:
    events = _boot("gtt_rhel8_gce_uefi")
    pcr7 = replay(events)["sha256"][7].hex()
    facts = _appraise(events, _reference(boot={"pcrs": {"7": [pcr7]}}))
    assert facts.boot_pcrs == (7,)
    with pytest.raises(ReferenceValueMismatch, match=r"boot PCR 7 \(sha256\)"):
        _appraise(events, _reference(boot={"pcrs": {"7": ["00" * 32]}}))


@pytest.mark.parametrize(("section", "words"), [
    ({"runtime": [], "extra": 1}, "unknown key"),
    ({"bank": "md5"}, "unknown bank"),
    ({"runtime": {"name": "x"}}, "must be a list"),
    ({"runtime": [{"name": "x", "digests": ["00"]}]}, "not a sha256 digest"),
    ({"runtime": [{"digests": []}]}, "needs a name"),
    ({"boot": {"pcrs": {"24": []}}}, "not a PCR number"),
    ({"boot": {"secure_boot": "yes"}}, "true or false"),
    ({"boot": {"boot_applications": "00"}}, "list of hex digests"),
    ({"boot": {"kernel": 1}}, "unknown key"),
])
def test_malformed_reference_values_are_bad_input(section: dict[str, Any], words: str) -> None:
    with pytest.raises(MalformedInput, match=words):
        ReferenceValues.from_dict(section)


def test_a_record_read_back_from_its_file_appraises_like_the_one_written() -> None:
    name = "/opt/bin/sauvegarde-é"
    content = measurement_content("command", name, {"sha256": BACKUP}, argv=[name, "--ü"])
    written = attest_record(0, 14, content, BANKS)
    read_back = parse_cel(encode_record(written)).records
    reference = _reference(runtime=[{"name": name, "digests": [BACKUP.hex()]}])
    assert _appraise(read_back, reference).runtime == ((name, BACKUP.hex()),)


# -- only what the TPM extended, only on what the quote covers (issue 10, item 11) ---------

def _retyped(events: tuple[TcgEvent, ...], index: int, event_type: int) -> list[TcgEvent]:
    """``events`` with event ``index`` claiming another type: its digest, what the TPM
    extended, is the same, so the log still replays to the same PCRs."""
    out = list(events)
    original = out[index]
    out[index] = TcgEvent(original.index, original.pcr, event_type, original.digests,
                          original.data, original.other_digests)
    return out


@pytest.mark.parametrize("claimed", [EventType.EV_EFI_BOOT_SERVICES_DRIVER,
                                     EventType.EV_EVENT_TAG, EventType.EV_IPL])
def test_a_boot_application_under_another_type_is_still_a_boot_application(
        claimed: EventType) -> None:
    events = _boot("ga_sb_cert_all24")
    apps = [e for e in events if e.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"]
    allowed = [e.digests["sha256"].hex() for e in apps[1:]]
    position = events.index(apps[0])
    with pytest.raises(ReferenceValueMismatch, match=apps[0].digests["sha256"].hex()):
        _appraise(_retyped(events, position, claimed),
                  _reference(boot={"boot_applications": allowed}))


def test_data_bound_events_on_pcr_4_are_not_boot_applications() -> None:
    # An EFI action string and a separator: digests of their own data, never an image's.
    events = _boot("gtt_rhel8_gce_uefi")
    on_pcr4 = {e.type_name for e in events if e.pcr == 4}
    assert {"EV_EFI_ACTION", "EV_SEPARATOR"} <= on_pcr4
    apps = [e.digests["sha256"].hex() for e in events
            if e.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"]
    facts = _appraise(events, _reference(boot={"boot_applications": apps}))
    assert facts.boot_applications is not None and len(facts.boot_applications) == len(apps)


def test_the_secure_boot_variable_is_read_whatever_type_it_claims() -> None:
    events = _boot("ga_ebs_event_missing_NEGATIVE")
    retyped = _retyped(events, 2, EventType.EV_EFI_VARIABLE_AUTHORITY)
    with pytest.raises(ReferenceValueMismatch, match="Secure Boot is off"):
        _appraise(retyped, _reference(bank="sha1", boot={"secure_boot": True}))


def test_secure_boot_measured_twice_with_different_values_is_refused() -> None:
    events = list(_boot("ga_ebs_event_missing_NEGATIVE"))
    off = events[2]
    on_data = off.data[:-1] + b"\x01"
    on = TcgEvent(len(events), off.pcr, off.event_type,
                  {bank: hashlib.new(bank, on_data).digest() for bank in off.digests}, on_data)
    with pytest.raises(ReferenceValueMismatch, match="SecureBoot 2 times"):
        _appraise([*events, on], _reference(bank="sha1", boot={"secure_boot": True}))


@pytest.mark.parametrize("boot", [{"secure_boot": True}, {"boot_applications": []},
                                  {"pcrs": {"8": ["00" * 32]}}])
def test_boot_state_on_a_pcr_outside_the_quote_is_never_appraised(boot: dict[str, Any]) -> None:
    events = _boot("ga_sb_cert_all24")
    with pytest.raises(ReferenceValueMismatch, match="not required to cover"):
        _appraise(events, _reference(boot=boot), covered={0, 1, 2, 3, 5, 6, 15})


def test_boot_events_on_pcrs_outside_the_quote_are_not_read() -> None:
    # A PCR 4 image the policy does not allow, in a log whose PCR 4 the quote does not
    # cover: the appraisal of PCR 7 alone must not see it (nor be steered by it).
    events = _boot("ga_sb_cert_all24")
    facts = _appraise(events, _reference(boot={"secure_boot": True}),
                      covered={0, 1, 2, 3, 5, 6, 7, 15})
    assert facts.secure_boot is True and facts.boot_applications is None


def _pe_bytes(marker: bytes) -> bytes:
    """What an Authenticode hash covers, for a made-up PE image: the DOS stub, the "PE\\0\\0"
    signature and headers, the sections; its SHA-256 is the digest firmware extends."""
    return b"MZ" + bytes(58) + (64).to_bytes(4, "little") + b"PE\0\0" + b"\x64\x86" + \
        bytes(200) + marker * 64


def test_an_image_whose_log_data_is_its_hashed_bytes_is_still_a_boot_application() -> None:
    # Found by the red team after issue 10 item 11: "digest == H(data)" was read as "not
    # an image", but an Authenticode hash is the SHA-256 of bytes the host knows. A host
    # that booted an image the policy does not allow writes those bytes as the event's
    # data: the digest, all the TPM extended, is unchanged, so the log still replays.
    events = list(_boot("ga_sb_cert_all24"))
    apps = [e for e in events if e.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"]
    allowed = [e.digests["sha256"].hex() for e in apps]
    hashed = _pe_bytes(b"grub 2.02 (revoked)")
    position = events.index(apps[0])
    original = events[position]
    events[position] = TcgEvent(original.index, original.pcr, original.event_type,
                                {bank: hashlib.new(bank, hashed).digest()
                                 for bank in original.digests}, hashed)
    with pytest.raises(ReferenceValueMismatch,
                       match=hashlib.sha256(hashed).hexdigest()):
        _appraise(events, _reference(boot={"boot_applications": allowed}))


@pytest.mark.parametrize("data", [b"\0\0\0\0", b"\xff\xff\xff\xff",
                                  b"Calling EFI Application from Boot Option",
                                  b"BOOT ATTEMPTS OMITTED", b"Calling INT 19h\0"])
def test_separators_and_action_strings_on_pcr_4_are_not_boot_applications(data: bytes) -> None:
    events = [TcgEvent(0, 4, EventType.EV_EFI_ACTION,
                       {"sha256": hashlib.sha256(data).digest()}, data)]
    facts = _appraise(events, _reference(boot={"boot_applications": []}))
    assert facts.boot_applications == ()


@pytest.mark.parametrize("data", [b"\0\0\0\0\0", b"\x01\0\0\0", b"te\0xt", b"PE\0\0d\x86",
                                  b"A" * 257])
def test_other_data_bound_events_on_pcr_4_are_appraised_as_images(data: bytes) -> None:
    events = [TcgEvent(0, 4, EventType.EV_EFI_ACTION,
                       {"sha256": hashlib.sha256(data).digest()}, data)]
    with pytest.raises(ReferenceValueMismatch, match="which no reference value allows"):
        _appraise(events, _reference(boot={"boot_applications": []}))
