"""The host's memory of what each verifier acknowledged, and what it sends from there
(attest.host.runtime.prefixes): a hint, used only while the log still begins with it."""

from __future__ import annotations

from pathlib import Path

from attest.artifact.model import RuntimeLogBase
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import attest_record, encode_log, measurement_content
from attest.host.runtime.prefixes import (
    MEMORY_NAME,
    PrefixMemory,
    acknowledged,
    fits_one_artifact,
    segments,
    send_from,
)


def _log(count: int, name: str = "item") -> bytes:
    return encode_log([attest_record(i, 15, measurement_content(
        "data", f"{name}-{i}", {"sha256": bytes([i]) * 32}), ["sha256"]) for i in range(count)])


def test_sends_the_records_after_a_prefix_the_log_still_begins_with() -> None:
    log = _log(5)
    known = RuntimeLogBase(3, log_prefix.prefix_digest(log, 3))
    assert send_from(log, known) == (known, log_prefix.split(log, 3)[1])
    assert send_from(log, None) == (None, log)


def test_sends_the_whole_log_when_the_prefix_is_not_its_own() -> None:
    log = _log(5)
    other = RuntimeLogBase(3, log_prefix.prefix_digest(_log(5, "other"), 3))
    assert send_from(log, other) == (None, log)
    beyond = RuntimeLogBase(6, bytes(32))
    assert send_from(log, beyond) == (None, log)
    assert send_from(b"[]", RuntimeLogBase(1, bytes(32))) == (None, b"[]")


def test_acknowledged_reads_only_a_well_formed_fact() -> None:
    good = {"runtime_log": {"count": 4, "digest": "ab" * 32}}
    assert acknowledged(good) == RuntimeLogBase(4, bytes.fromhex("ab" * 32))
    for bad in (None, [], {}, {"runtime_log": {"count": True, "digest": "ab" * 32}},
                {"runtime_log": {"count": 0, "digest": "ab" * 32}},
                {"runtime_log": {"count": 4, "digest": "zz" * 32}},
                {"runtime_log": {"count": 4, "digest": "ab"}}):
        assert acknowledged(bad) is None, bad


def test_memory_is_per_verifier_and_boot(tmp_path: Path) -> None:
    memory = PrefixMemory(tmp_path)
    base = RuntimeLogBase(4, bytes(range(32)))
    assert memory.get("store:a", (1, 0)) is None
    memory.put("store:a", (1, 0), base)
    assert memory.get("store:a", (1, 0)) == base
    assert memory.get("store:b", (1, 0)) is None
    assert memory.get("store:a", (2, 0)) is None  # another boot: the log was archived
    assert memory.get("store:a", None) is None
    assert (tmp_path / MEMORY_NAME).stat().st_mode & 0o777 == 0o600


def test_a_damaged_memory_is_no_memory(tmp_path: Path) -> None:
    (tmp_path / MEMORY_NAME).write_text("{not json")
    memory = PrefixMemory(tmp_path)
    assert memory.get("store:a", (1, 0)) is None
    memory.put("store:a", (1, 0), RuntimeLogBase(1, bytes(32)))
    assert memory.get("store:a", (1, 0)) == RuntimeLogBase(1, bytes(32))


def test_segments_are_whole_records_within_the_limit() -> None:
    log = _log(40)
    limit = len(log) // 7
    parts = segments(log, limit)
    assert b"".join(parts) == log
    assert all(len(part) <= limit for part in parts) and len(parts) >= 7
    assert all(log_prefix.records_of(part) for part in parts)
    assert fits_one_artifact(1 << 20) and not fits_one_artifact(8 << 20)
