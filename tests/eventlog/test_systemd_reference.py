"""reference.systemd: systemd's records on the runtime PCR, appraised by the digest each
extended (its description is bound by no digest), and every way around it denied."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from attest.errors import EventLogMismatch, MalformedInput, ReferenceValueMismatch
from attest.eventlog.appraise import ReferenceValues, appraise
from attest.eventlog.cel import CelRecord, attest_record, measurement_content, parse_cel
from tests.runtime.systemd_writer import record_bytes

MACHINE = "machine-id:4a1b6c0e2d8f4b1a9c3e5d7f9a1b3c5d"
MACHINE_DIGEST = hashlib.sha256(MACHINE.encode()).hexdigest()
TOOL = hashlib.sha256(b"tool").digest()


def _systemd(word: str = MACHINE, content_type: str = "systemd") -> CelRecord:
    data = record_bytes(15, word, "machine-id", ["sha1", "sha256"])
    return parse_cel(data.replace(b'"content_type":"systemd"',
                                  f'"content_type":"{content_type}"'.encode())).records[0]


def _attest() -> CelRecord:
    return attest_record(1, 15, measurement_content("file", "/usr/bin/tool", {"sha256": TOOL},
                                                    path="/usr/bin/tool"), ["sha256"])


def _appraise(records: list[CelRecord], **sections: Any) -> None:
    appraise(records, ReferenceValues.from_dict(sections), covered=range(24))


RUNTIME = [{"name": "/usr/bin/tool", "digests": [TOOL.hex()]}]


def test_a_systemd_record_with_an_allowed_digest_is_accepted() -> None:
    _appraise([_systemd(), _attest()], runtime=RUNTIME, systemd=[MACHINE_DIGEST])
    _appraise([_systemd()], systemd=[MACHINE_DIGEST])  # systemd's section alone


def test_an_unexpected_systemd_record_is_a_reference_mismatch() -> None:
    with pytest.raises(ReferenceValueMismatch, match=r"no reference\.systemd value allows") as e:
        _appraise([_systemd("file-system:/:ext4"), _attest()], runtime=RUNTIME,
                  systemd=[MACHINE_DIGEST])
    assert "file-system:/:ext4" in e.value.message
    with pytest.raises(ReferenceValueMismatch):
        _appraise([_systemd("file-system:/:ext4")], systemd=[MACHINE_DIGEST])
    with pytest.raises(ReferenceValueMismatch):
        _appraise([_systemd()], runtime=RUNTIME, systemd=[])  # empty: nothing allowed


def test_without_reference_systemd_a_systemd_record_is_denied_naming_the_section() -> None:
    with pytest.raises(ReferenceValueMismatch, match=r"reference\.systemd"):
        _appraise([_systemd(), _attest()], runtime=RUNTIME)


def test_a_new_description_on_an_allowed_digest_changes_nothing_the_tpm_vouches_for() -> None:
    # systemd's description is the host's word: the digest alone is appraised.
    record = _systemd()
    relabelled = CelRecord(record.index, record.recnum, record.pcr, record.digests,
                           record.content_type, {**record.content, "string": "anything"})
    _appraise([relabelled], systemd=[MACHINE_DIGEST])


def test_an_attest_record_does_not_pass_as_systemd_by_its_digest() -> None:
    # An attest record whose digest is an allowed systemd digest is still an attest
    # record: its content must hash to it, and its name be a runtime reference.
    fake = CelRecord(0, 0, 15, {"sha256": bytes.fromhex(MACHINE_DIGEST)}, "attest",
                     {"type": "data", "name": "x", "digest": {"sha256": "00" * 32}})
    with pytest.raises((EventLogMismatch, ReferenceValueMismatch)):
        _appraise([fake], runtime=RUNTIME, systemd=[MACHINE_DIGEST])


def test_another_content_type_spelled_like_systemd_is_not_systemd() -> None:
    with pytest.raises(ReferenceValueMismatch, match="content type 'Systemd'"):
        _appraise([_systemd(content_type="Systemd")], runtime=RUNTIME,
                  systemd=[MACHINE_DIGEST])


def test_reference_systemd_is_strict() -> None:
    for bad in (MACHINE_DIGEST, [MACHINE_DIGEST[:-2]], ["zz" * 32], [None]):
        with pytest.raises(MalformedInput, match=r"reference\.systemd"):
            ReferenceValues.from_dict({"systemd": bad})
