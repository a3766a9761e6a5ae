"""Replay: reset values, startup locality, banks, and what a mismatch report says."""

from __future__ import annotations

import hashlib

import pytest

from attest.errors import EventLogError, EventLogMismatch, ReplayMismatch
from attest.eventlog.cel import attest_record, measurement_content
from attest.eventlog.replay import check_replay, replay, reset_value
from attest.eventlog.tcg import parse_tcg
from tests.eventlog.logbuilder import EV_EFI_ACTION, EV_NO_ACTION, EV_SEPARATOR, agile_log, extend

EV_EFI_HCRTM_EVENT = 0x80000010
LOCALITY = b"StartupLocality\x00"


def test_pcrs_start_at_zero_and_dynamic_launch_pcrs_at_all_ones() -> None:
    assert reset_value("sha256", 4) == bytes(32)
    assert reset_value("sha1", 17) == b"\xff" * 20
    assert reset_value("sha256", 22) == b"\xff" * 32
    assert reset_value("sha256", 23) == bytes(32)
    assert reset_value("sha256", 0, locality=3) == bytes(31) + b"\x03"


def test_replay_extends_each_event_into_its_pcr_in_every_bank() -> None:
    events = parse_tcg(agile_log([(4, EV_EFI_ACTION, b"a"), (4, EV_EFI_ACTION, b"b"),
                                  (17, EV_EFI_ACTION, b"c")])).events
    values = replay(events)
    assert values["sha256"][4] == extend(extend(bytes(32), b"a", "sha256"), b"b", "sha256")
    assert values["sha1"][17] == extend(b"\xff" * 20, b"c", "sha1")
    assert set(values["sha256"]) == {4, 17}


def test_no_action_events_are_not_extended() -> None:
    events = parse_tcg(agile_log([(4, EV_NO_ACTION, b"anything"),
                                  (4, EV_EFI_ACTION, b"a")])).events
    assert replay(events)["sha256"][4] == extend(bytes(32), b"a", "sha256")


def test_startup_locality_event_sets_pcr0_start() -> None:
    events = parse_tcg(agile_log([(0, EV_NO_ACTION, LOCALITY + b"\x03"),
                                  (0, EV_SEPARATOR, bytes(4))])).events
    assert replay(events)["sha256"][0] == extend(bytes(31) + b"\x03", bytes(4), "sha256")


def test_an_hcrtm_event_starts_pcr0_at_locality_4_and_is_extended() -> None:
    events = parse_tcg(agile_log([(0, EV_EFI_HCRTM_EVENT, b"HCRTM"),
                                  (0, EV_SEPARATOR, bytes(4))])).events
    start = bytes(31) + b"\x04"
    assert replay(events)["sha256"][0] == extend(extend(start, b"HCRTM", "sha256"), bytes(4),
                                                 "sha256")


@pytest.mark.parametrize("events", [
    [(0, EV_NO_ACTION, LOCALITY + b"\x07")],
    [(0, EV_NO_ACTION, LOCALITY + b"\x03"), (0, EV_NO_ACTION, LOCALITY + b"\x00")],
])
def test_impossible_startup_localities_are_a_log_error(
        events: list[tuple[int, int, bytes]]) -> None:
    with pytest.raises(EventLogError, match="StartupLocality"):
        replay(parse_tcg(agile_log(events)).events)


def test_mismatch_names_pcr_bank_values_and_the_last_events() -> None:
    events = parse_tcg(agile_log([(9, EV_EFI_ACTION, f"step {i}".encode()) for i in range(8)]
                                 + [(4, EV_EFI_ACTION, b"other")])).events
    with pytest.raises(ReplayMismatch) as caught:
        check_replay(events, {("sha256", 9): bytes(32)})
    error = caught.value
    assert (error.pcr, error.bank, error.expected) == (9, "sha256", bytes(32))
    assert error.replayed == replay(events)["sha256"][9]
    assert len(error.last_events) == 5
    assert "step 7" in error.last_events[-1] and "step 3" in error.last_events[0]
    assert error.reason == "eventlog_mismatch" and error.exit_code == 1


def test_boot_and_runtime_logs_replay_together() -> None:
    boot = parse_tcg(agile_log([(14, EV_EFI_ACTION, b"boot")])).events
    content = measurement_content("data", "mode", {"sha256": hashlib.sha256(b"on").digest()})
    record = attest_record(0, 14, content, ["sha1", "sha256"])
    values = replay([*boot, record])
    expected = hashlib.sha256(extend(bytes(32), b"boot", "sha256")
                              + record.digests["sha256"]).digest()
    assert values["sha256"][14] == expected


def test_a_bank_missing_from_one_record_is_not_replayed() -> None:
    content = measurement_content("data", "x", {})
    both = attest_record(0, 14, content, ["sha1", "sha256"])
    one = attest_record(1, 14, content, ["sha256"])
    assert set(replay([both, one])) == {"sha256"}
    with pytest.raises(EventLogMismatch, match="sha1"):
        check_replay([both, one], {("sha1", 14): bytes(20)}, require=[("sha1", 14)])


def test_an_empty_log_replays_to_nothing_and_covers_only_reset_values() -> None:
    assert replay([]) == {}
    facts = check_replay([], {("sha256", 14): bytes(32)}, require=[("sha256", 14)])
    assert facts.verified == (("sha256", 14),)
