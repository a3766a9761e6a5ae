"""Measurement logs: what the PCR values mean.

Pure functions over bytes (no TPM, no files, no clock):

- :mod:`~attest.eventlog.tcg`: TCG PC Client boot logs (``binary_bios_measurements``),
  legacy SHA-1 and crypto-agile; :mod:`~attest.eventlog.content` and
  :mod:`~attest.eventlog.efi` decode the event data appraisal needs.
- :mod:`~attest.eventlog.cel`: the CEL-JSON runtime log attest writes (and systemd's).
- :mod:`~attest.eventlog.replay`: logs to PCR values, and the comparison with a quote.
- :mod:`~attest.eventlog.sources`: which log may explain which PCR (one per PCR).
- :mod:`~attest.eventlog.appraise`: reference values.

Errors: :class:`~attest.errors.EventLogError` (``eventlog_malformed``) and its
subclasses for ``eventlog_mismatch`` and ``reference_value_mismatch``.
"""

from attest.eventlog.appraise import AppraisalFacts, ReferenceValues, appraise
from attest.eventlog.cel import CelLog, CelRecord, encode_record, parse_cel
from attest.eventlog.logfile import MeasurementLog, parse_log
from attest.eventlog.replay import ReplayFacts, check_replay, replay
from attest.eventlog.sources import LogSources
from attest.eventlog.tcg import TcgEvent, TcgLog, parse_tcg

__all__ = [
    "AppraisalFacts",
    "CelLog",
    "CelRecord",
    "LogSources",
    "MeasurementLog",
    "ReferenceValues",
    "ReplayFacts",
    "TcgEvent",
    "TcgLog",
    "appraise",
    "check_replay",
    "encode_record",
    "parse_cel",
    "parse_log",
    "parse_tcg",
    "replay",
]
