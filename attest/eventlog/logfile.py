"""A measurement log of either format, told apart by its first bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attest.errors import EventLogError
from attest.eventlog.cel import RS, CelRecord, parse_cel
from attest.eventlog.tcg import TcgEvent, parse_tcg

LogFormat = Literal["tcg", "cel"]
FORMATS = ("auto", "tcg", "cel")


@dataclass(frozen=True)
class MeasurementLog:
    format: LogFormat
    events: tuple[TcgEvent, ...] | tuple[CelRecord, ...]


def detect_format(data: bytes) -> LogFormat:
    """CEL-JSON starts (after blanks) with RS or '['; a PC Client log can't.

    A PC Client log starts with a little-endian PCR index: 0x1e and 0x5b would be
    PCRs 30 and 91. An empty file is an empty runtime log: nothing measured yet.
    """
    head = data[:64].lstrip(b" \t\r\n")
    if not head or head.startswith((RS, b"[")):
        return "cel"
    return "tcg"


def parse_log(data: bytes, fmt: str = "auto") -> MeasurementLog:
    """Parse ``data`` as ``fmt`` ("auto", "tcg" or "cel"), or raise EventLogError."""
    if fmt not in FORMATS:
        raise EventLogError(f"unknown log format {fmt!r}; one of {', '.join(FORMATS)}")
    kind: LogFormat = detect_format(data) if fmt == "auto" else ("tcg" if fmt == "tcg" else "cel")
    if kind == "tcg":
        return MeasurementLog("tcg", parse_tcg(data).events)
    return MeasurementLog("cel", parse_cel(data).records)
