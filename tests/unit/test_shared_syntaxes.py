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
