"""Property tests: random and mutated logs yield events or the log error, nothing else."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest.errors import EventLogError
from attest.eventlog.cel import attest_record, encode_log, measurement_content, parse_cel
from attest.eventlog.content import describe, image_of, variable_of
from attest.eventlog.eventtypes import IMAGE_EVENTS, VARIABLE_EVENTS
from attest.eventlog.logfile import parse_log
from attest.eventlog.replay import replay
from attest.eventlog.tcg import parse_tcg
from tests.eventlog.conftest import load_vector, vector_names
from tests.eventlog.logbuilder import EV_EFI_ACTION, EV_SEPARATOR, SHA1, SHA256, SM3, agile_log

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Real vectors when present, else a synthetic log with every feature the parser has.
SEEDS = [load_vector(name).log for name in vector_names()] or [
    agile_log([(0, EV_EFI_ACTION, b"x"), (7, EV_SEPARATOR, bytes(4))],
              algorithms=(SHA1, SM3, SHA256))]
CEL_SEED = encode_log([attest_record(n, 14, measurement_content(
    "command", f"/bin/t{n}", {"sha256": bytes(32)}, argv=["/bin/t", str(n)]), ["sha1", "sha256"])
    for n in range(3)])
INTERESTING_U32 = [0, 1, 2, 3, 24, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000]


def exercise_tcg(data: bytes) -> None:
    """Everything a caller does with a boot log; only EventLogError may escape."""
    try:
        log = parse_tcg(data)
    except EventLogError:
        return
    for event in log.events:
        assert isinstance(describe(event), str)
        assert isinstance(event.label, str)
        with contextlib.suppress(EventLogError):
            if event.event_type in VARIABLE_EVENTS:
                variable_of(event)
            elif event.event_type in IMAGE_EVENTS:
                assert image_of(event).file_path is None or image_of(event).file_path
    with contextlib.suppress(EventLogError):
        replay(log.events)


def exercise_cel(data: bytes) -> None:
    try:
        log = parse_cel(data, allow_torn_tail=True)
    except EventLogError:
        return
    for record in log.records:
        assert isinstance(record.label, str)
    with contextlib.suppress(EventLogError):
        replay(log.records)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "u32", "truncate", "delete", "insert"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "u32":
            data[at:at + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING_U32)))
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_parse_or_raise_the_log_error(data: bytes) -> None:
    exercise_tcg(data)
    exercise_cel(data)
    with contextlib.suppress(EventLogError):
        parse_log(data)


@FUZZ
@given(mutated(SEEDS))
def test_mutated_boot_logs_parse_or_raise_the_log_error(data: bytes) -> None:
    exercise_tcg(data)


@FUZZ
@given(mutated([CEL_SEED]))
def test_mutated_runtime_logs_parse_or_raise_the_log_error(data: bytes) -> None:
    exercise_cel(data)
