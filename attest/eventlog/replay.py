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
from operator import attrgetter, itemgetter
from typing import Protocol

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
    # Lists of the events and of their digests, not of new tuples: on a 100,000-record
    # log every new container makes the cyclic collector rescan the whole heap.
    measured = [event for event in events if event.extends and event.pcr is not None]
    maps: list[Mapping[str, bytes]] = list(map(_DIGESTS, measured))
    candidates = [bank for bank in maps[0] if bank in DIGEST_SIZES] if maps else []
    asked = candidates if banks is None else [b for b in banks if b in candidates]
    locality = startup_locality(events)
    pcrs: list[int] = list(map(_PCR, measured))  # not None: filtered above
    if pcrs and pcrs.count(pcrs[0]) == len(pcrs) and 0 < len(asked) <= 2:
        # One PCR (a runtime log): the banks' chains side by side, in one pass.
        chained = _one_pcr(maps, pcrs[0], asked, locality)
        if chained is not None:
            return chained
    chains = _complete_banks(maps)
    result: PCRBanks = {}
    for bank in (b for b in asked if b in chains):
        new = _hash_constructor(bank)
        size = DIGEST_SIZES[bank]
        digests = chains[bank]
        if set(map(len, digests)) != {size}:
            _raise_digest_size(measured, digests, bank, size)
        values: dict[int, bytes] = {}
        for pcr, digest in zip(pcrs, digests, strict=True):
            current = values.get(pcr)
            if current is None:
                current = reset_value(bank, pcr, locality)
            values[pcr] = new(current + digest).digest()
        result[bank] = dict(sorted(values.items()))
    return result


_PCR = attrgetter("pcr")
_DIGESTS = attrgetter("digests")


def _one_pcr(maps: Sequence[Mapping[str, bytes]], pcr: int, banks: Sequence[str],
             locality: int) -> PCRBanks | None:
    """Replay of events that all extend ``pcr`` in 1 or 2 banks; None (for the
    general replay to say what is wrong) when an event lacks a bank or has a
    digest of the wrong size."""
    first, second = banks[0], banks[-1]
    new_first, new_second = _hash_constructor(first), _hash_constructor(second)
    size_first, size_second = DIGEST_SIZES[first], DIGEST_SIZES[second]
    value_first = reset_value(first, pcr, locality)
    value_second = reset_value(second, pcr, locality)
    try:
        if len(banks) == 1:
            for digests in maps:
                digest = digests[first]
                if len(digest) != size_first:
                    return None
                value_first = new_first(value_first + digest).digest()
        else:
            for digests in maps:
                digest, other = digests[first], digests[second]
                if len(digest) != size_first or len(other) != size_second:
                    return None
                value_first = new_first(value_first + digest).digest()
                value_second = new_second(value_second + other).digest()
    except KeyError:
        return None
    if len(banks) == 1:
        return {first: {pcr: value_first}}
    return {first: {pcr: value_first}, second: {pcr: value_second}}


def _complete_banks(maps: Sequence[Mapping[str, bytes]]) -> dict[str, list[bytes]]:
    """Each bank every event has a digest for, with those digests in event order."""
    chains: dict[str, list[bytes]] = {}
    if not maps:
        return chains
    for bank in maps[0]:
        if bank in DIGEST_SIZES:
            try:
                chains[bank] = list(map(itemgetter(bank), maps))
            except KeyError:
                continue  # an event without this bank
    return chains


def _raise_digest_size(measured: Sequence[Measurement], digests: Sequence[bytes], bank: str,
                       size: int) -> None:
    for event, digest in zip(measured, digests, strict=True):
        if len(digest) != size:
            raise EventLogError(f"{event.label}: a {bank} digest is {size} bytes, "
                                f"not {len(digest)}")


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
    return compare_replay(events, replay(events), startup_locality(events), reported,
                          require=require)


def compare_replay(
    events: Sequence[Measurement],
    replayed: PCRBanks,
    locality: int,
    reported: Mapping[tuple[str, int], bytes],
    *,
    require: Iterable[tuple[str, int]] = (),
) -> ReplayFacts:
    """:func:`check_replay` given the log's :func:`replay` and :func:`startup_locality`,
    which depend on the log alone: a verifier that sees one log again keeps them."""
    required = set(require)
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
