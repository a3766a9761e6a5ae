"""Reference values: what the measurements in a log are allowed to be.

Appraisal runs after the log was shown to replay to the quoted PCRs
(:func:`attest.eventlog.replay.check_replay`); only then is the log's content
the TPM's word rather than the host's. It returns the facts it established, or
raises naming the record at fault:

- :class:`ReferenceValueMismatch` (``reference_value_mismatch``): a measurement
  the reference values do not allow;
- :class:`EventLogMismatch` (``eventlog_mismatch``): a record whose data does
  not hash to the digest that was extended, so its description can't be trusted.

The reference model is built from a plain dict (the policy file's ``reference``
section)::

    {"bank": "sha256",
     "runtime": [{"name": "/usr/bin/backup", "digests": ["<hex>", ...]}],
     "systemd": ["<hex>", ...],
     "boot": {"pcrs": {"0": ["<hex>", ...]},
              "secure_boot": true,
              "boot_applications": ["<hex>", ...]}}

A section left out is not appraised; a section present but empty allows nothing.
``systemd`` appraises the records systemd logged on the runtime PCR and attest copied
into its log (attest.host.runtime.systemd_log) by the digest each extended in ``bank``:
systemd binds no description to its digest (a volume key's is an HMAC), so the digest
is all the TPM vouches for. With ``runtime`` and without ``systemd``, a systemd record
is denied like any other content no reference value covers.

Only what the TPM vouches for drives a decision (docs/measurement.md, "What boot
appraisal trusts"): events on PCRs outside ``covered`` (the PCRs the quote must
cover and the log was replayed against) are never read, and an event's type and
description, which no digest binds, never decide whether it is appraised. A
boot application is any digest on PCR 4 except the hash of a separator or an
EFI action string given as its event's data (an image hash, whatever type the
event claims and whatever data the log gives it); Secure Boot is read only
from variable data that hashes to the digest extended on PCR 7.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from attest.errors import EventLogError, EventLogMismatch, MalformedInput, ReferenceValueMismatch
from attest.eventlog import efi
from attest.eventlog.cel import (
    ATTEST_CONTENT_TYPE,
    SYSTEMD_CONTENT_TYPE,
    CelRecord,
    check_content_bound,
)
from attest.eventlog.content import image_of
from attest.eventlog.efi import EFI_GLOBAL_VARIABLE
from attest.eventlog.eventtypes import IMAGE_EVENTS
from attest.eventlog.replay import last_events, replay, reset_value, startup_locality
from attest.eventlog.tcg import TcgEvent
from attest.evidence.pcrs import DIGEST_SIZES, PCR_COUNT

SECURE_BOOT_PCR = 7
# PFP 1.06 3.3.4.5: the Authenticode hashes of boot applications (boot loaders) go to PCR 4.
BOOT_APPLICATIONS_PCR = 4


@dataclass(frozen=True)
class ReferenceValues:
    """Allowed measurements, each section None when the policy does not appraise it."""

    bank: str = "sha256"
    runtime: Mapping[str, frozenset[bytes]] | None = None
    boot_pcrs: Mapping[int, frozenset[bytes]] | None = None
    secure_boot: bool | None = None
    boot_applications: frozenset[bytes] | None = None
    systemd: frozenset[bytes] | None = None

    @property
    def appraises_runtime_log(self) -> bool:
        """Whether any section reads the runtime log's records."""
        return self.runtime is not None or self.systemd is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceValues:
        """Build from the policy's ``reference`` section; unknown keys are an error."""
        _only_keys(data, {"bank", "runtime", "boot", "systemd"}, "reference")
        bank = data.get("bank", "sha256")
        if bank not in DIGEST_SIZES:
            raise MalformedInput(f"reference: unknown bank {bank!r}; "
                                 f"use one of {', '.join(DIGEST_SIZES)}")
        runtime = None
        if "runtime" in data:
            runtime = MappingProxyType(_runtime(data["runtime"], bank))
        boot = data.get("boot", {})
        if not isinstance(boot, Mapping):
            raise MalformedInput("reference.boot must be a mapping")
        _only_keys(boot, {"pcrs", "secure_boot", "boot_applications"}, "reference.boot")
        pcrs = None
        if "pcrs" in boot:
            pcrs = MappingProxyType(_boot_pcrs(boot["pcrs"], bank))
        secure_boot = boot.get("secure_boot")
        if secure_boot is not None and not isinstance(secure_boot, bool):
            raise MalformedInput("reference.boot.secure_boot must be true or false")
        applications = None
        if "boot_applications" in boot:
            applications = _digest_set(boot["boot_applications"], bank,
                                       "reference.boot.boot_applications")
        systemd = None
        if "systemd" in data:
            systemd = _digest_set(data["systemd"], bank, "reference.systemd")
        return cls(bank, runtime, pcrs, secure_boot, applications, systemd)

    @property
    def boot_appraised_pcrs(self) -> frozenset[int]:
        """The PCRs the boot sections read: their log must be the boot log, replayed
        against the quote; empty when the policy appraises no boot state."""
        pcrs = set(self.boot_pcrs or ())
        if self.secure_boot is not None:
            pcrs.add(SECURE_BOOT_PCR)
        if self.boot_applications is not None:
            pcrs.add(BOOT_APPLICATIONS_PCR)
        return frozenset(pcrs)


@dataclass(frozen=True)
class AppraisalFacts:
    """What the log was shown to contain; each field None when not appraised."""

    secure_boot: bool | None
    boot_pcrs: tuple[int, ...] | None
    boot_applications: tuple[tuple[str, str], ...] | None
    runtime: tuple[tuple[str, str], ...] | None


def appraise(events: Sequence[TcgEvent | CelRecord], reference: ReferenceValues, *,
             covered: Collection[int], bound_checked: bool = False) -> AppraisalFacts:
    """Check a replay-verified log against ``reference``; return facts or raise.

    ``covered``: the PCRs the quote covers and the log was shown to replay to. Boot
    events on any other PCR are the host's word only and are not read; a boot
    section that appraises a PCR outside ``covered`` is refused.
    ``bound_checked``: the caller ran cel.check_content_bound on these very CEL records
    and it passed (attest.verify.appraisal.view_logs does, just before): then each
    record's content is not canonicalised and hashed a second time. Without it, every
    attest record is checked here, as the appraisal of a content needs it bound.
    """
    outside = sorted(reference.boot_appraised_pcrs - set(covered))
    if outside:
        raise ReferenceValueMismatch(
            f"the reference values appraise boot PCR {', '.join(map(str, outside))}, which the "
            "quote is not required to cover: its log would be the host's word only")
    boot = [e for e in events if isinstance(e, TcgEvent) and e.pcr in covered]
    runtime = [e for e in events if isinstance(e, CelRecord)]
    bank = reference.bank
    if reference.runtime is None:
        _check_systemd_only(runtime, bank, reference.systemd)
    return AppraisalFacts(
        secure_boot=_secure_boot(boot, bank, reference.secure_boot)
        if reference.secure_boot is not None else None,
        boot_pcrs=_check_boot_pcrs(boot, bank, reference.boot_pcrs)
        if reference.boot_pcrs is not None else None,
        boot_applications=_check_boot_applications(boot, bank, reference.boot_applications)
        if reference.boot_applications is not None else None,
        runtime=_check_runtime(runtime, bank, reference.runtime, bound_checked,
                               reference.systemd)
        if reference.runtime is not None else None,
    )


def _check_boot_pcrs(boot: Sequence[TcgEvent], bank: str,
                     allowed: Mapping[int, frozenset[bytes]]) -> tuple[int, ...]:
    replayed = replay(boot, banks=[bank]).get(bank, {})
    locality = startup_locality(boot)
    for pcr, values in sorted(allowed.items()):
        value = replayed.get(pcr, reset_value(bank, pcr, locality))
        if value not in values:
            events = last_events(boot, pcr)
            detail = "; last events:\n  " + "\n  ".join(events) if events else \
                "; the log does not extend it"
            raise ReferenceValueMismatch(
                f"boot PCR {pcr} ({bank}) is {value.hex()}, which no reference value "
                f"allows{detail}")
    return tuple(sorted(allowed))


def _secure_boot(boot: Sequence[TcgEvent], bank: str, required: bool) -> bool:
    # Any extended event on PCR 7 whose data is the SecureBoot variable counts, whatever
    # type it claims: the type is not extended, the variable data is (PFP 10.4.4).
    found: list[tuple[TcgEvent, bytes]] = []  # each event with its variable's value
    for event in boot:
        if not event.extends or event.pcr != SECURE_BOOT_PCR:
            continue
        try:
            variable = efi.parse_variable_data(event.data)
        except EventLogError:
            continue  # not a variable: its data cannot say SecureBoot is on
        if variable.guid == EFI_GLOBAL_VARIABLE and variable.name == "SecureBoot":
            _check_data_digest(event, bank)
            found.append((event, variable.data))
    if not found:
        raise ReferenceValueMismatch("the boot log does not measure the SecureBoot variable "
                                     f"(EV_EFI_VARIABLE_DRIVER_CONFIG on PCR {SECURE_BOOT_PCR})")
    values = {data for _, data in found}
    if len(values) > 1:
        raise ReferenceValueMismatch(f"the boot log measures SecureBoot {len(found)} times with "
                                     "different values; firmware measures it once")
    event = found[-1][0]
    value = values.pop()
    # SecureBoot is one byte, 1 when on (UEFI 2.10, 3.3); some firmware logs it empty.
    enabled = value == b"\x01"
    if enabled != required:
        state = "on" if enabled else f"off (SecureBoot = {value.hex() or 'empty'})"
        raise ReferenceValueMismatch(f"{event.label}: Secure Boot is {state}; the reference "
                                     f"values require it {'on' if required else 'off'}")
    return enabled


def _check_boot_applications(boot: Sequence[TcgEvent], bank: str,
                             allowed: frozenset[bytes]) -> tuple[tuple[str, str], ...]:
    seen: list[tuple[str, str]] = []
    for event in boot:
        if not event.extends or event.pcr != BOOT_APPLICATIONS_PCR:
            continue
        digest = _digest(event, bank)
        if _measured_text(event.data) and hashlib.new(bank, event.data).digest() == digest:
            # Its data is what was measured, and is a separator or an EFI action string:
            # no image's Authenticode hash is the hash of such data.
            continue
        # Anything else extended here is an image hash (PFP 10.4.3), whatever type the
        # event claims (a boot application retyped as a driver extends the same digest)
        # and whatever data the log gives it (an Authenticode hash is the SHA-256 of
        # bytes the host knows: written as the event's data, they hash to the digest):
        # it can only be compared with known-good values.
        where = _image_name(event)
        if digest not in allowed:
            raise ReferenceValueMismatch(f"#{event.index} PCR {event.pcr} boot application "
                                         f"{where} has {bank} digest {digest.hex()}, which no "
                                         "reference value allows")
        seen.append((where, digest.hex()))
    return tuple(seen)


# What firmware extends on PCR 4 as the hash of the event's own data (PFP 10.4.3,
# 10.4.4): a separator (0 or, on error, all ones) and EFI action strings. An image's
# Authenticode-hashed bytes are never such data: the PE signature (PE, NUL, NUL) sits
# inside them, followed by the machine type (0x8664, 0xaa64, ...: not printable ASCII).
_SEPARATORS = (b"\0" * 4, b"\xff" * 4)
MAX_ACTION_STRING = 256


def _measured_text(data: bytes) -> bool:
    """Whether ``data`` is a separator or an action string: printable ASCII, bounded,
    with at most trailing NULs (some BIOS-era firmware terminates its strings)."""
    text = data.rstrip(b"\0")
    return data in _SEPARATORS or (len(text) > 0 and len(data) <= MAX_ACTION_STRING
                                   and text.isascii() and text.decode("ascii").isprintable())


def _image_name(event: TcgEvent) -> str:
    """What the event says it loaded: words for people, never a basis for a decision."""
    if event.event_type in IMAGE_EVENTS:
        try:
            image = image_of(event)
        except EventLogError:
            pass
        else:
            return image.file_path or image.path or f"image at 0x{image.location:x}"
    return f"({event.type_name})"


def _check_systemd_only(records: Sequence[CelRecord], bank: str,
                        allowed: frozenset[bytes] | None) -> None:
    # reference.systemd without reference.runtime: systemd's records only (the runtime
    # facts stay None: attest's own records are not appraised).
    if allowed is None:
        return
    for record in records:
        if record.extends and record.content_type == SYSTEMD_CONTENT_TYPE:
            _check_systemd(record, bank, allowed)


def _check_systemd(record: CelRecord, bank: str, allowed: frozenset[bytes]) -> None:
    digest = record.digests.get(bank)
    if digest is None:
        raise ReferenceValueMismatch(f"{record.label}: the record has no {bank} digest; the "
                                     "reference values are for that bank")
    if digest not in allowed:
        raise ReferenceValueMismatch(f"{record.label}: systemd extended {bank} digest "
                                     f"{digest.hex()}, which no reference.systemd value allows")


def _check_runtime(records: Sequence[CelRecord], bank: str,
                   allowed: Mapping[str, frozenset[bytes]],
                   bound_checked: bool = False,
                   systemd: frozenset[bytes] | None = None) -> tuple[tuple[str, str], ...]:
    seen: list[tuple[str, str]] = []
    for record in records:
        if not record.extends:
            continue
        if record.content_type == SYSTEMD_CONTENT_TYPE and systemd is not None:
            _check_systemd(record, bank, systemd)
            continue
        if record.content_type != ATTEST_CONTENT_TYPE:
            hint = (" (systemd's records: reference.systemd)"
                    if record.content_type == SYSTEMD_CONTENT_TYPE else "")
            raise ReferenceValueMismatch(f"{record.label}: no reference value covers content "
                                         f"type {record.content_type!r}{hint}")
        # An attest record extends H(canonical content): any edit of the content shows here
        # (or showed in the caller's check of these records, ``bound_checked``).
        if not bound_checked:
            check_content_bound((record,))
        name = record.content.get("name")
        measured = record.content.get("digest")
        if not isinstance(name, str) or not isinstance(measured, dict) or \
                not isinstance(measured.get(bank), str):
            raise ReferenceValueMismatch(f"{record.label}: the record names no {bank} digest "
                                         "of what it measured")
        path = record.content.get("path")
        candidates = allowed.get(name)
        if candidates is None and isinstance(path, str):
            candidates = allowed.get(path)
        if candidates is None:
            raise ReferenceValueMismatch(f"{record.label}: no reference value for {name!r}")
        value = measured[bank].lower()
        if not any(value == c.hex() for c in candidates):
            raise ReferenceValueMismatch(f"{record.label}: {bank} digest {value} is not a "
                                         f"reference value for {name!r}")
        seen.append((name, value))
    return tuple(seen)


def _digest(event: TcgEvent, bank: str) -> bytes:
    digest = event.digests.get(bank)
    if digest is None:
        raise ReferenceValueMismatch(f"{event.label}: the boot log records no {bank} digest; "
                                     "the reference values are for that bank")
    return digest


def _check_data_digest(event: TcgEvent, bank: str) -> None:
    if hashlib.new(bank, event.data).digest() != _digest(event, bank):
        raise EventLogMismatch(f"{event.label}: the event data does not hash to the {bank} "
                               "digest that was extended")


def _only_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise MalformedInput(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                             f"allowed: {', '.join(sorted(allowed))}")


def _digest_set(raw: Any, bank: str, where: str) -> frozenset[bytes]:
    if not isinstance(raw, list):
        raise MalformedInput(f"{where} must be a list of hex digests")
    values: set[bytes] = set()
    for item in raw:
        try:
            value = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            value = b""
        if len(value) != DIGEST_SIZES[bank]:
            raise MalformedInput(f"{where}: {item!r} is not a {bank} digest "
                                 f"({2 * DIGEST_SIZES[bank]} hex digits)")
        values.add(value)
    return frozenset(values)


def _runtime(raw: Any, bank: str) -> dict[str, frozenset[bytes]]:
    if not isinstance(raw, list):
        raise MalformedInput("reference.runtime must be a list of {name, digests}")
    result: dict[str, frozenset[bytes]] = {}
    for number, entry in enumerate(raw):
        where = f"reference.runtime[{number}]"
        if not isinstance(entry, Mapping):
            raise MalformedInput(f"{where} must be a mapping with name and digests")
        _only_keys(entry, {"name", "digests"}, where)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise MalformedInput(f"{where} needs a name (a measurement name or a path)")
        digests = _digest_set(entry.get("digests"), bank, f"{where}.digests")
        result[name] = result.get(name, frozenset()) | digests
    return result


def _boot_pcrs(raw: Any, bank: str) -> dict[int, frozenset[bytes]]:
    if not isinstance(raw, Mapping):
        raise MalformedInput("reference.boot.pcrs must map PCR numbers to lists of digests")
    result: dict[int, frozenset[bytes]] = {}
    for key, values in raw.items():
        try:
            pcr = int(key)
        except (TypeError, ValueError):
            pcr = -1
        if not 0 <= pcr < PCR_COUNT:
            raise MalformedInput(f"reference.boot.pcrs: {key!r} is not a PCR number "
                                 f"0-{PCR_COUNT - 1}")
        result[pcr] = _digest_set(values, bank, f"reference.boot.pcrs[{key}]")
    return result
