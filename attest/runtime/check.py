"""`attest eventlog check`: do the host's logs explain the TPM's PCRs?"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from attest.eventlog.cel import CelRecord, check_content_bound
from attest.eventlog.logfile import MeasurementLog, parse_log
from attest.eventlog.replay import ReplayFacts, check_replay
from attest.eventlog.tcg import TcgEvent
from attest.evidence.pcrs import PCRSelection
from attest.inputfile import MAX_LOG_BYTES, read_bounded
from attest.tpm.device import TPM
from attest.tpm.pcr import active_banks, read_pcrs

# Where Linux exposes the firmware's boot log (securityfs).
BOOT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")


def default_boot_log() -> Path | None:
    """ATTEST_BOOT_LOG, else the kernel's boot log when it exists and can be read."""
    env = os.environ.get("ATTEST_BOOT_LOG")
    if env:
        return Path(env)
    return BOOT_LOG if os.access(BOOT_LOG, os.R_OK) else None


@dataclass(frozen=True)
class CheckedLogs:
    logs: tuple[tuple[Path, MeasurementLog], ...]
    facts: ReplayFacts


def check_logs(tpm: TPM, files: Sequence[Path]) -> CheckedLogs:
    """Replay the logs together and compare every PCR they extend with the TPM's value.

    Raises ReplayMismatch naming the PCR, bank, both values and the last events.
    """
    logs = tuple((path, parse_log(read_bounded(path, "log", MAX_LOG_BYTES))) for path in files)
    events: list[TcgEvent | CelRecord] = []
    for _, log in logs:
        if log.format == "cel":
            check_content_bound(cast(tuple[CelRecord, ...], log.events))
        events.extend(log.events)
    touched = sorted({e.pcr for e in events if e.extends and e.pcr is not None})
    reported: dict[tuple[str, int], bytes] = {}
    if touched:
        banks = active_banks(tpm)
        reported = read_pcrs(tpm, PCRSelection.of({bank: touched for bank in banks}))
    return CheckedLogs(logs, check_replay(events, reported))
