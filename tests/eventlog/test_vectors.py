"""Real logs from real machines replay to the PCR values their TPMs reported."""

from __future__ import annotations

import json

import pytest

from attest.errors import EventLogMismatch, ReplayMismatch
from attest.eventlog.replay import check_replay, replay
from attest.eventlog.tcg import parse_tcg
from tests.eventlog.conftest import EVENTLOGS, load_vector, require_vectors, vector_params


def _reported(pcrs: dict[str, dict[str, str]]) -> dict[tuple[str, int], bytes]:
    return {(bank, int(pcr)): bytes.fromhex(value)
            for bank, values in pcrs.items() for pcr, value in values.items()}


@pytest.mark.parametrize("name", vector_params())
def test_every_vector_log_replays_to_its_reported_pcrs(name: str) -> None:
    vector = load_vector(name)
    events = parse_tcg(vector.log).events
    if not vector.expect_match:
        with pytest.raises(ReplayMismatch):
            check_replay(events, _reported(vector.pcrs))
        return
    facts = check_replay(events, _reported(vector.pcrs))
    assert set(facts.verified) == set(_reported(vector.pcrs))
    assert facts.not_covered == ()


def test_missing_exit_boot_services_events_mismatch_on_pcr5() -> None:
    require_vectors()
    vector = load_vector("ga_ebs_event_missing_NEGATIVE")
    events = parse_tcg(vector.log).events
    with pytest.raises(ReplayMismatch) as caught:
        check_replay(events, _reported(vector.pcrs))
    error = caught.value
    assert (error.pcr, error.bank) == (5, "sha1")
    assert error.expected.hex().startswith("31245808")
    assert error.replayed.hex().startswith("e5781a2f")
    assert error.reason == "eventlog_mismatch"
    assert isinstance(error, EventLogMismatch)
    # The report lists the last events on PCR 5, the last one being the GPT event.
    assert "EV_EFI_GPT_EVENT" in error.last_events[-1]
    text = error.diagnostics()
    assert "PCR 5 (sha1)" in text and "31245808" in text and "e5781a2f" in text


def test_pcrs_the_log_never_extends_are_not_covered_rather_than_mismatched() -> None:
    require_vectors()
    vector = load_vector("ga_sb_cert_all24")
    all24 = json.loads((EVENTLOGS / "ga_sb_cert_all24" / "all24_pcrs.json").read_text())
    reported = _reported(all24)
    facts = check_replay(parse_tcg(vector.log).events, reported)
    assert ("sha256", 10) in facts.not_covered  # IMA's PCR: the boot log can't vouch for it
    assert {("sha1", 7), ("sha256", 0)} <= set(facts.verified)


def test_a_required_pcr_the_log_never_extends_is_compared_with_its_reset_value() -> None:
    require_vectors()
    vector = load_vector("ga_sb_cert_all24")
    all24 = json.loads((EVENTLOGS / "ga_sb_cert_all24" / "all24_pcrs.json").read_text())
    reported = _reported(all24)
    events = parse_tcg(vector.log).events
    # PCRs 17-22 hold all ones and PCR 16 zeros: both are their reset values.
    facts = check_replay(events, reported, require=[("sha256", 16), ("sha256", 17)])
    assert ("sha256", 17) in facts.verified
    with pytest.raises(ReplayMismatch) as caught:
        check_replay(events, reported, require=[("sha256", 10)])
    assert caught.value.pcr == 10
    assert "no event on PCR 10" in caught.value.message


def test_hcrtm_log_starts_pcr0_at_locality_4_and_skips_the_sm3_bank() -> None:
    require_vectors()
    vector = load_vector("tss_hcrtm_pcr0")
    log = parse_tcg(vector.log)
    assert log.spec_id is not None
    assert [a.alg_id for a in log.spec_id.algorithms] == [0x0004, 0x000B, 0x0012]
    assert log.banks == ("sha1", "sha256")
    assert all(other[0][0] == 0x0012 for other in (e.other_digests for e in log.events[1:]))
    assert set(replay(log.events)) == {"sha1", "sha256"}


def test_startup_locality_3_sets_the_last_byte_of_pcr0() -> None:
    require_vectors()
    vector = load_vector("gtt_glinux_laptop")
    events = parse_tcg(vector.log).events
    assert [e.startup_locality for e in events if e.startup_locality is not None] == [3]
    from_zero = replay([e for e in events if e.startup_locality is None])
    assert from_zero["sha256"][0].hex() != vector.pcrs["sha256"]["0"]
    assert replay(events)["sha256"][0].hex() == vector.pcrs["sha256"]["0"]
