"""`attest eventlog check`: do the host's logs explain the TPM's PCRs?"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from attest.errors import EventLogError
from attest.eventlog.cel import CelRecord, check_content_bound
from attest.eventlog.logfile import MeasurementLog, parse_log
from attest.eventlog.replay import ReplayFacts, check_replay
from attest.eventlog.tcg import TcgEvent
from attest.evidence.pcrs import PCRSelection
from attest.inputfile import MAX_LOG_BYTES, read_at_most
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


def distinct_logs(defaults: Sequence[Path], given: Sequence[Path]) -> list[Path]:
    """The default logs, then the given ones that are not one of them or given before:
    a file replayed twice would extend its records twice (never a match)."""
    files: list[Path] = []
    for path in (*defaults, *given):
        if not any(_same_file(path, seen) for seen in files):
            files.append(path)
    return files


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing: the same name is the same file (reading will say)
        return os.path.abspath(a) == os.path.abspath(b)


def check_logs(tpm: TPM, files: Sequence[Path], *, runtime: int | None = None,
               shared: Path | None = None) -> CheckedLogs:
    """Replay the logs together and compare every PCR they extend, and the runtime PCR,
    with the TPM's value.

    The runtime PCR is compared even when no log mentions it: a log that is silent
    about a PCR holding measurements (an emptied or missing runtime log) explains
    nothing, so that PCR must be at its reset value. It is ``runtime`` when the caller
    knows it (the home's runtime log's; other CEL logs may then extend other PCRs, as
    systemd's PCR 11 phases do), else the PCR the CEL logs extend, else the home's
    ($ATTEST_RUNTIME_PCR or 15).
    ``shared`` is systemd's log when it shares the runtime PCR with attest: its records
    for that PCR were copied into the runtime log, so they are left out of it here
    (replayed once, from the runtime log); its records for other PCRs are replayed.
    Raises ReplayMismatch naming the PCR, bank, both values and the last events.
    """
    from attest.host.runtime.log import log_pcr, runtime_pcr

    if shared is not None and runtime is None:
        raise ValueError("a shared systemd log needs the runtime PCR it shares")
    logs = tuple((path, _without_shared(path, parse_log(_read_log(path)), shared, runtime))
                 for path in files)
    events: list[TcgEvent | CelRecord] = []
    runtime_records: list[CelRecord] = []
    for _, log in logs:
        if log.format == "cel":
            records = cast(tuple[CelRecord, ...], log.events)
            check_content_bound(records)
            runtime_records.extend(records)
        events.extend(log.events)
    if runtime is None:
        runtime = log_pcr(runtime_records)
    if runtime is None:
        runtime = runtime_pcr(allow_resettable=True)
    touched = sorted({e.pcr for e in events if e.extends and e.pcr is not None} | {runtime})
    banks = active_banks(tpm)
    reported = read_pcrs(tpm, PCRSelection.of({bank: touched for bank in banks}))
    return CheckedLogs(logs, check_replay(events, reported,
                                          require=[(bank, runtime) for bank in banks]))


def _without_shared(path: Path, log: MeasurementLog, shared: Path | None,
                    pcr: int | None) -> MeasurementLog:
    if shared is None or log.format != "cel" or not _same_file(path, shared):
        return log
    records = cast(tuple[CelRecord, ...], log.events)
    return MeasurementLog("cel", tuple(r for r in records if r.pcr != pcr))


def _read_log(path: Path) -> bytes:
    """The log's bytes; a log larger than any real one is evidence that does not parse
    (exit 1, eventlog_malformed), not bad usage."""
    data = read_at_most(path, MAX_LOG_BYTES)
    if len(data) > MAX_LOG_BYTES:
        raise EventLogError(f"log {path} holds more than {MAX_LOG_BYTES} bytes: not one")
    return data
