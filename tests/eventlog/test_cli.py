"""`attest eventlog replay|show`: output for people and for machines; bad files exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from attest.cli.main import cli
from attest.eventlog.cel import attest_record, encode_log, measurement_content
from tests.eventlog.conftest import EVENTLOGS, load_vector, require_vectors


def run(tmp_path: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["eventlog", *args], env={"ATTEST_HOME": str(tmp_path)},
                                catch_exceptions=False)
    assert "internal error" not in result.output, result.output
    return result


def _vector_file(name: str) -> str:
    require_vectors()
    return str(EVENTLOGS / name / "binary_bios_measurements")


def test_replay_json_prints_every_extended_pcr_per_bank(tmp_path: Path) -> None:
    result = run(tmp_path, "replay", _vector_file("gtt_rhel8_gce_uefi"), "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert set(values) == {"sha1", "sha256", "sha384"}
    expected = load_vector("gtt_rhel8_gce_uefi").pcrs
    for bank, pcrs in expected.items():
        for pcr, value in pcrs.items():
            assert values[bank][pcr] == value


def test_replay_without_json_prints_a_list_per_bank(tmp_path: Path) -> None:
    result = run(tmp_path, "replay", _vector_file("gtt_debian10_gce_legacy_sha1"))
    assert result.exit_code == 0
    assert result.output.startswith("sha1:\n")
    pcr7 = load_vector("gtt_debian10_gce_legacy_sha1").pcrs["sha1"]["7"]
    assert f"   7 : {pcr7}" in result.output


def test_replay_reads_a_cel_runtime_log(tmp_path: Path) -> None:
    record = attest_record(0, 14, measurement_content("data", "mode", {"sha256": bytes(32)}),
                           ["sha256"])
    path = tmp_path / "runtime.log"
    path.write_bytes(encode_log([record]))
    for fmt in ("auto", "cel"):
        result = run(tmp_path, "replay", str(path), "--format", fmt, "--json")
        assert result.exit_code == 0, result.output
        assert list(json.loads(result.output)["sha256"]) == ["14"]


def test_show_prints_a_table_with_decoded_events(tmp_path: Path) -> None:
    result = run(tmp_path, "show", _vector_file("ga_sb_cert_all24"))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["#", "PCR", "type", "digest"]
    row = next(line for line in lines if "BOOTX64" in line)
    assert row.split()[:3] == ["10", "4", "EV_EFI_BOOT_SERVICES_APPLICATION"]
    assert any("SecureBoot = 01" in line for line in lines)


def test_show_json_lists_every_event_with_all_digests(tmp_path: Path) -> None:
    result = run(tmp_path, "show", _vector_file("tss_hcrtm_pcr0"), "--json")
    events = json.loads(result.output)
    assert events[1]["type"] == "EV_EFI_HCRTM_EVENT" and events[1]["pcr"] == 0
    assert set(events[1]["digests"]) == {"sha1", "sha256"}
    assert events[0]["extends"] is False


@pytest.mark.parametrize(("content", "fmt", "words"), [
    (b"\x00\x00\x00\x00\x01", "auto", "ends inside"),
    (b"\x1e{broken\n", "auto", "not valid JSON"),
    (b"\x00" * 40, "cel", "not a CEL-JSON log"),
])
def test_a_malformed_log_exits_1_with_the_reason(tmp_path: Path, content: bytes, fmt: str,
                                                 words: str) -> None:
    # A log is evidence: one that does not parse is refused, not bad usage.
    path = tmp_path / "log.bin"
    path.write_bytes(content)
    for command in ("replay", "show"):
        result = run(tmp_path, command, str(path), "--format", fmt)
        assert result.exit_code == 1
        assert "eventlog_malformed" in result.output and words in result.output


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, "replay", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "nope" in result.output


def test_an_empty_file_is_an_empty_runtime_log(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    result = run(tmp_path, "replay", str(path), "--json")
    assert result.exit_code == 0 and json.loads(result.output) == {}
    assert "extends no PCR" in run(tmp_path, "replay", str(path)).output
