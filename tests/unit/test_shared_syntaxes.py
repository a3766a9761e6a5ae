"""One syntax for each small value both the policy file and the command line read
(durations, hex), and one certification label both the host and the verifier use."""

from __future__ import annotations

import pytest

from attest import durations, hexdigits
from attest.cli import common
from attest.errors import UsageError
from attest.policy import values


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300),
                                               ("1h30m", 5400), ("2d", 172800)])
def test_the_command_line_reads_every_duration_the_policy_reads(text: str, seconds: int) -> None:
    assert durations.parse_duration(text) == seconds
    assert common.parse_duration(text, "--ttl") == seconds


@pytest.mark.parametrize("text", ["", "m", "1x", "1h1h", "-5s", "9" * 13, "1.5h"])
def test_a_duration_either_refuses_the_command_line_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        durations.parse_duration(text)
    with pytest.raises(UsageError):
        common.parse_duration(text, "--ttl")


def test_the_bounds_are_the_callers() -> None:
    with pytest.raises(ValueError, match="longest duration, 7d"):
        durations.parse_duration("8d", maximum=7 * 86400)
    with pytest.raises(ValueError, match="shortest duration, 1s"):
        durations.parse_duration("0s", minimum=1)
    with pytest.raises(UsageError, match=r"--ttl: .*longest duration, 7d"):
        common.parse_duration("8d", "--ttl")
    with pytest.raises(UsageError, match=r"--ttl: .*shortest"):
        common.parse_duration("0", "--ttl")


def test_no_second_duration_or_hex_parser_remains() -> None:
    assert not hasattr(values, "parse_duration") and not hasattr(values, "parse_hex")


@pytest.mark.parametrize("text", ["0x00", "00 11", "zz", "0"])
def test_hex_either_refuses_the_command_line_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        hexdigits.parse_hex(text)
    with pytest.raises(UsageError):
        common.parse_hex(text, "--nonce")


def test_hex_bounds() -> None:
    assert hexdigits.parse_hex(" 00ff ", size=2) == b"\x00\xff"
    with pytest.raises(ValueError, match="of 2 bytes"):
        hexdigits.parse_hex("00", size=2)
    assert common.parse_hex("00" * 64, "--nonce", 64) == bytes(64)
    with pytest.raises(UsageError, match="--nonce is 65 bytes; at most 64"):
        common.parse_hex("00" * 65, "--nonce", 64)


# -- one grammar, three readers (attest.durations) ----------------------------------------
@pytest.mark.parametrize(("text", "ms"), [
    ("90", 90_000), ("90s", 90_000), ("1h30m", 5_400_000), ("30m1h", 5_400_000),
    ("250ms", 250), ("1s500ms", 1500), ("1m1ms", 60_001), ("0", 0), (" 2s ", 2000),
    ("2d", 172_800_000)])
def test_the_one_duration_grammar(text: str, ms: int) -> None:
    assert durations.parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["1.5s", "1,5s", "+5s", "-5s", "5 s", "5S", "1e3s", "ms",
                                  "5ms5ms", "1m1m", "\u0665s", "5s\n5s", "0x10s", "", "5µs"])
def test_every_other_form_is_refused_by_every_reader(text: str) -> None:
    for parse in (durations.parse_duration_ms, durations.parse_duration,
                  lambda t: durations.parse_seconds(t, minimum=0, maximum=60)):
        with pytest.raises(ValueError, match=r"expected a duration like|a unit appears twice"):
            parse(text)


def test_whole_seconds_refuse_a_part_of_a_second_instead_of_rounding() -> None:
    assert durations.parse_duration("2000ms") == 2
    with pytest.raises(ValueError, match="not a whole number of seconds"):
        durations.parse_duration("1500ms")


def test_seconds_keep_the_milliseconds_and_the_bounds() -> None:
    assert durations.parse_seconds("500ms", minimum=0.2, maximum=3600) == 0.5
    with pytest.raises(ValueError, match="shortest duration, 200ms"):
        durations.parse_seconds("199ms", minimum=0.2, maximum=3600)
    with pytest.raises(ValueError, match="longest duration, 1h"):
        durations.parse_seconds("1h1ms", minimum=0.2, maximum=3600)


def test_no_long_number_reaches_int() -> None:
    with pytest.raises(ValueError, match="longest duration"):
        durations.parse_duration_ms("1ms" + "9" * 5000 + "s")


@pytest.mark.parametrize(("ms", "text"), [(0, "0s"), (250, "250ms"), (1500, "1500ms"),
                                          (60_000, "1m"), (86_400_000, "1d")])
def test_formatted_durations_read_back(ms: int, text: str) -> None:
    assert durations.format_duration_ms(ms) == text
    assert durations.parse_duration_ms(text) == ms


def test_the_cli_and_the_agent_share_the_parser() -> None:
    assert common.parse_seconds("1m", "--interval", 0.2, 3600) == 60.0
    with pytest.raises(UsageError, match="--interval: expected a duration like") as caught:
        common.parse_seconds("1.5s", "--interval", 0.2, 3600)
    assert caught.value.hint == "write e.g. 250ms, 2s or 1m; from 200ms to 1h"
    from attest.host.agent import reporting
    assert not hasattr(reporting, "parse_interval")
