"""Which log explains which PCR: exactly one source per PCR, the one the policy appraises.

A verifier replays the runtime log (CEL, attest's records) and, when the policy
appraises boot state, the boot log (TCG PC Client). Replayed together, either
log could explain the other's PCRs, and what one log explains escapes the
reference values of the other: a boot log carrying the runtime PCR's digests
hides runtime measurements from ``reference.runtime``. So:

- the runtime PCR is explained by the runtime log alone: a boot event that
  extends it is refused, as is a runtime record on any other PCR;
- the boot log is read only when the policy appraises boot PCRs, and is then
  required: a boot log the policy does not appraise is refused, and so is an
  artifact without one when the policy appraises boot;
- the PCRs the boot sections appraise are compared with the quote even when
  the boot log says nothing about them (``must_replay``): a log with a PCR's
  events removed does not pass as "nothing measured there".

Every refusal is :class:`EventLogMismatch` (``eventlog_mismatch``), except a boot
reference on the runtime PCR (``reference_value_mismatch``; the policy loader
refuses it first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attest.errors import EventLogMismatch, ReferenceValueMismatch
from attest.eventlog.cel import CelRecord
from attest.eventlog.tcg import TcgEvent


@dataclass(frozen=True)
class LogSources:
    """The policy's answer to "which log explains which PCR".

    ``runtime_pcr``: the PCR the runtime log, and only it, explains.
    ``boot_pcrs``: the PCRs the policy appraises with the boot log; empty when it
    appraises no boot state (then no boot log is accepted).
    ``covered``: the PCRs every quote must cover (the policy's required PCRs): the
    only ones whose log is replayed against the TPM, so the only ones appraised.
    """

    runtime_pcr: int
    boot_pcrs: frozenset[int]
    covered: frozenset[int]

    @property
    def wants_boot_log(self) -> bool:
        return bool(self.boot_pcrs)

    def must_replay(self) -> tuple[int, ...]:
        """PCRs whose quoted value the logs must reproduce, even from no event at all."""
        return (self.runtime_pcr, *sorted(self.boot_pcrs))

    def check(self, runtime: Sequence[CelRecord], boot: Sequence[TcgEvent] | None) -> None:
        """Raise EventLogMismatch unless each log explains only the PCRs it is for."""
        if self.runtime_pcr in self.boot_pcrs:
            # The loader refuses such a policy; one built by hand gets no further.
            raise ReferenceValueMismatch(f"the reference values appraise the runtime PCR "
                                         f"{self.runtime_pcr} as boot state; only the runtime "
                                         "log explains it")
        stray = next((r for r in runtime if r.extends and r.pcr != self.runtime_pcr), None)
        if stray is not None:
            raise EventLogMismatch(f"runtime records outside PCR {self.runtime_pcr}: "
                                   f"{stray.label}")
        if boot is None:
            if self.wants_boot_log:
                raise EventLogMismatch(
                    "the policy appraises boot PCR "
                    f"{', '.join(map(str, sorted(self.boot_pcrs)))} but the evidence (artifact "
                    "or bundle) carries no boot log", hint="make it with the boot log "
                    "(attest authorize --boot-log, attest sign --boot-log)")
            return
        if not self.wants_boot_log:
            raise EventLogMismatch(
                "the evidence (artifact or bundle) carries a boot log the policy does not "
                "appraise (no reference.boot): it would explain PCRs no reference value "
                "checks", hint="make it without --boot-log, or add reference.boot to the "
                "policy")
        into_runtime = next((e for e in boot if e.extends and e.pcr == self.runtime_pcr), None)
        if into_runtime is not None:
            raise EventLogMismatch(
                f"the boot log extends the runtime PCR {self.runtime_pcr} "
                f"({into_runtime.label}): only the runtime log may explain it",
                hint="choose a runtime PCR that firmware and boot loaders leave alone "
                     "(pcrs.runtime)")
