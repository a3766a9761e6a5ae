"""One log per PCR: which log may explain which PCR (attest.eventlog.sources), in pure form.

The same attacks run end to end on a swtpm in tests/verify/test_log_sources.py.
"""

from __future__ import annotations

import hashlib

import pytest

from attest.errors import EventLogMismatch, ReferenceValueMismatch
from attest.eventlog.cel import CelRecord, attest_record, measurement_content
from attest.eventlog.eventtypes import EventType
from attest.eventlog.sources import LogSources
from attest.eventlog.tcg import TcgEvent

COVERED = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 15})
NO_BOOT = LogSources(15, frozenset(), COVERED)
BOOT = LogSources(15, frozenset({4, 7}), COVERED)


def _record(pcr: int = 15) -> CelRecord:
    content = measurement_content("file", "/usr/bin/backup",
                                  {"sha256": hashlib.sha256(b"v1").digest()})
    return attest_record(0, pcr, content, ["sha256"])


def _event(pcr: int, event_type: int = EventType.EV_IPL) -> TcgEvent:
    return TcgEvent(1, pcr, event_type, {"sha256": hashlib.sha256(b"x").digest()}, b"x")


def test_logs_each_on_their_own_pcrs_pass() -> None:
    NO_BOOT.check([_record()], None)
    BOOT.check([_record()], [_event(4), _event(7), _event(8)])
    assert BOOT.must_replay() == (15, 4, 7) and NO_BOOT.must_replay() == (15,)


def test_a_runtime_record_on_another_pcr_is_refused() -> None:
    with pytest.raises(EventLogMismatch, match="outside PCR 15"):
        NO_BOOT.check([_record(pcr=14)], None)


def test_a_boot_event_on_the_runtime_pcr_is_refused() -> None:
    with pytest.raises(EventLogMismatch, match="extends the runtime PCR 15"):
        BOOT.check([], [_event(4), _event(15)])


def test_an_informational_boot_event_on_the_runtime_pcr_extends_nothing() -> None:
    BOOT.check([], [_event(4), _event(15, EventType.EV_NO_ACTION)])


def test_a_boot_log_no_reference_appraises_is_refused() -> None:
    with pytest.raises(EventLogMismatch, match="does not appraise"):
        NO_BOOT.check([_record()], [_event(4)])


def test_boot_appraisal_without_a_boot_log_is_refused() -> None:
    with pytest.raises(EventLogMismatch, match="no boot log"):
        BOOT.check([_record()], None)


def test_a_boot_reference_on_the_runtime_pcr_is_refused() -> None:
    with pytest.raises(ReferenceValueMismatch, match="runtime PCR 15"):
        LogSources(15, frozenset({4, 15}), COVERED).check([], [_event(4)])
