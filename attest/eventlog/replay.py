"""Replay a measurement log into PCR values, and compare them with what a TPM reported.

Any mix of boot events (:class:`~attest.eventlog.tcg.TcgEvent`) and runtime records
(:class:`~attest.eventlog.cel.CelRecord`) replays: both are :class:`Measurement`.

Reset values, as a PC Client TPM has them after TPM2_Startup (TCG PC Client
Platform TPM Profile 1.05, table "PCR Attributes"; PFP 1.06 section 3.3.2):

- PCRs 17-22 (the dynamic-launch PCRs) hold all ones until a dynamic launch;
- every other PCR holds zeros, except PCR 0, whose last byte is the locality
  TPM2_Startup ran at: the value of a StartupLocality EV_NO_ACTION event
  (PFP 10.4.5.3, 0 or 3), or 4 when the log records an H-CRTM measurement
  (EV_EFI_HCRTM_EVENT): the H-CRTM sequence runs at locality 4 and resets PCR 0
  to 0...04 before extending its digest.

EV_NO_ACTION events are never extended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from attest.errors import EventLogError, EventLogMismatch, ReplayMismatch
from attest.evidence.pcrs import DIGEST_SIZES

DRTM_PCRS = range(17, 23)
HCRTM_LOCALITY = 4
# How many of a PCR's last events a mismatch report lists.
REPORTED_EVENTS = 5

PCRBanks = dict[str, dict[int, bytes]]


class Measurement(Protocol):
    """One extend of one PCR, in every bank the log records."""

    @property
    def pcr(self) -> int | None: ...

    @property
    def digests(self) -> Mapping[str, bytes]: ...

    @property
    def extends(self) -> bool: ...

    @property
    def startup_locality(self) -> int | None: ...

    @property
    def hcrtm(self) -> bool: ...

    @property
    def label(self) -> str: ...


def reset_value(bank: str, pcr: int, locality: int = 0) -> bytes:
    """The value PCR ``pcr`` of ``bank`` holds after TPM2_Startup at ``locality``."""
    size = DIGEST_SIZES[bank]
    if pcr in DRTM_PCRS:
        return b"\xff" * size
    if pcr == 0:
        return bytes(size - 1) + bytes([locality])
    return bytes(size)


def startup_locality(events: Iterable[Measurement]) -> int:
    """The locality PCR 0 starts at, as the log tells it."""
    locality: int | None = None
    for event in events:
        if event.hcrtm:
            return HCRTM_LOCALITY
        value = event.startup_locality
        if value is not None:
            if locality is not None and value != locality:
                raise EventLogError(f"the log has two StartupLocality events ({locality} and "
                                    f"{value}); TPM2_Startup runs once")
            if value not in (0, 3, HCRTM_LOCALITY):
                raise EventLogError(f"StartupLocality {value} is not a locality TPM2_Startup "
                                    "runs at (0, 3, or 4 for H-CRTM)")
            locality = value
    return locality or 0


def replay(events: Sequence[Measurement], banks: Iterable[str] | None = None) -> PCRBanks:
    """Replay ``events`` into ``{bank: {pcr: value}}`` for every PCR they extend.

    A bank appears only when every extending event carries a digest for it (a
    bank with a hole can't be replayed); ``banks`` limits the output further.
    """
    # A list of the events themselves, not of new tuples: on a 100,000-record log
    # every new container makes the cyclic collector rescan the whole heap.
    measured = [event for event in events if event.extends and event.pcr is not None]
    complete = _complete_banks(measured)
    wanted = complete if banks is None else [b for b in banks if b in complete]
    locality = startup_locality(events)
    result: PCRBanks = {}
    for bank in wanted:
        new = _hash_constructor(bank)
        size = DIGEST_SIZES[bank]
        values: dict[int, bytes] = {}
        for event in measured:
            pcr = cast(int, event.pcr)  # not None: filtered above
            digest = event.digests[bank]
            if len(digest) != size:
                raise EventLogError(f"{event.label}: a {bank} digest is {size} bytes, "
                                    f"not {len(digest)}")
            current = values.get(pcr)
            if current is None:
                current = reset_value(bank, pcr, locality)
            values[pcr] = new(current + digest).digest()
        result[bank] = dict(sorted(values.items()))
    return result


def _complete_banks(measured: Sequence[Measurement]) -> list[str]:
    if not measured:
        return []
    common = [bank for bank in measured[0].digests if bank in DIGEST_SIZES]
    for event in measured[1:]:
        common = [bank for bank in common if bank in event.digests]
    return common


class _Hash(Protocol):
    def digest(self) -> bytes: ...


def _hash_constructor(bank: str) -> Callable[[bytes], _Hash]:
    # hashlib.sha256 and friends: about twice as fast as hashlib.new(name) per call.
    constructor: Callable[[bytes], _Hash] = getattr(hashlib, bank)
    return constructor


@dataclass(frozen=True)
class ReplayFacts:
    """What a successful comparison established.

    ``verified``: (bank, PCR) pairs whose reported value the log explains.
    ``not_covered``: reported pairs the log says nothing about; their values are
    the TPM's word only, and a verifier must not rely on them.
    """

    verified: tuple[tuple[str, int], ...]
    not_covered: tuple[tuple[str, int], ...]


def check_replay(
    events: Sequence[Measurement],
    reported: Mapping[tuple[str, int], bytes],
    *,
    require: Iterable[tuple[str, int]] = (),
) -> ReplayFacts:
    """Raise :class:`ReplayMismatch` unless the log replays to the ``reported`` PCRs.

    Every reported PCR the log extends is compared. A reported PCR the log never
    extends is compared (with its reset value) only when ``require`` names it:
    real machines extend PCRs no boot log mentions (IMA's PCR 10), so by default
    such a PCR is reported as not covered rather than as a mismatch.
    """
    replayed = replay(events)
    required = set(require)
    locality = startup_locality(events)
    verified: list[tuple[str, int]] = []
    not_covered: list[tuple[str, int]] = []
    for bank, pcr in sorted(reported):
        expected = reported[(bank, pcr)]
        value = replayed.get(bank, {}).get(pcr)
        if value is None:
            if (bank, pcr) not in required:
                not_covered.append((bank, pcr))
                continue
            if bank not in DIGEST_SIZES:
                raise EventLogError(f"unknown PCR bank {bank!r}")
            if bank not in replayed and any(e.extends and e.pcr is not None for e in events):
                raise EventLogMismatch(f"PCR {pcr} ({bank}) is required, but the log does not "
                                       f"record {bank} digests for every event")
            value = reset_value(bank, pcr, locality)
        if value != expected:
            raise ReplayMismatch(pcr=pcr, bank=bank, expected=expected, replayed=value,
                                 last_events=last_events(events, pcr))
        verified.append((bank, pcr))
    return ReplayFacts(tuple(verified), tuple(not_covered))


def last_events(events: Sequence[Measurement], pcr: int,
                count: int = REPORTED_EVENTS) -> tuple[str, ...]:
    """Labels of the last ``count`` events that extended ``pcr``, oldest first."""
    found: list[str] = []
    for event in reversed(events):
        if event.extends and event.pcr == pcr:
            found.append(event.label)
            if len(found) == count:
                break
    return tuple(reversed(found))


def hex_banks(values: PCRBanks) -> dict[str, dict[str, str]]:
    """The JSON form: ``{"sha256": {"0": "<lowercase hex>", ...}}``."""
    return {bank: {str(pcr): value.hex() for pcr, value in pcrs.items()}
            for bank, pcrs in values.items()}
