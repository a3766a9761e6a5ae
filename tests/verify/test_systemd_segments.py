"""Segments of a runtime log carrying systemd's records, appraised with a policy whose
reference has ``systemd`` and no ``runtime`` (attest.verify.incremental.appraise_segment):
systemd's records in a segment are appraised even then, on a real swtpm."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

from attest.artifact.model import RuntimeLogBase
from attest.decision import Denial
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import parse_cel
from attest.host.runtime.log import RuntimeLog
from attest.policy.model import VerifierPolicy
from attest.reasons import Reason
from attest.tpm.pcr import active_banks, extend
from attest.verify.segments import add_segment
from attest.verify.verifier import Verifier
from tests.runtime.systemd_writer import record_bytes
from tests.verify.rig import Rig, accepted

RUNTIME_PCR = 15
WORD = "machine-id:4a1b6c0e2d8f4b1a9c3e5d7f9a1b3c5d"


def _systemd_extends(rig: Rig, word: str) -> None:
    """systemd extends the runtime PCR and its record is copied into attest's log, as
    attest copies it (numbered after attest's records)."""
    log = RuntimeLog(rig.home)
    with log.locked(), rig.tpm() as tpm:
        banks = active_banks(tpm)
        item = json.loads(record_bytes(RUNTIME_PCR, word, "machine-id", banks)[1:])
        data = b"\x1e" + json.dumps({"recnum": log.read().next_recnum(), **item}).encode() + b"\n"
        with open(log.path, "ab") as handle:
            handle.write(data)
        extend(tpm, RUNTIME_PCR, {bank: hashlib.new(bank, word.encode()).digest()
                                  for bank in banks})


def _listing(rig: Rig, *words: str) -> VerifierPolicy:
    """reference.systemd listing ``words``' digests, and no reference.runtime (a policy
    file may say so; render_policy writes no reference without a runtime section)."""
    policy = rig.policy(runtime_reference={},
                        systemd_reference=[hashlib.sha256(w.encode()).digest() for w in words])
    assert policy.reference is not None
    return dataclasses.replace(policy, reference=dataclasses.replace(policy.reference,
                                                                     runtime=None))


def _add(rig: Rig, policy: VerifierPolicy, verifier: Verifier, base: RuntimeLogBase | None,
         data: bytes) -> RuntimeLogBase | Denial:
    return add_segment(policy, verifier.store, rig.identity.ak_name, base, data,
                       int(time.time()))


def test_a_listed_systemd_record_in_a_segment_is_accepted(rig: Rig) -> None:
    _systemd_extends(rig, WORD)
    policy = _listing(rig, WORD)
    assert policy.reference is not None and policy.reference.runtime is None
    verifier = rig.verifier(policy)
    log = (rig.home / "runtime.cel").read_bytes()
    assert [r.content_type for r in parse_cel(log).records] == ["attest", "systemd"]
    base = _add(rig, policy, verifier, None, log)
    assert isinstance(base, RuntimeLogBase) and base.count == 2, base
    accepted(verifier.verify(rig.issue(log_base=base)))


def test_an_unlisted_systemd_record_in_a_first_segment_is_denied(rig: Rig) -> None:
    _systemd_extends(rig, WORD)
    policy = _listing(rig, "machine-id:another")
    verifier = rig.verifier(policy)
    refused = _add(rig, policy, verifier, None, (rig.home / "runtime.cel").read_bytes())
    assert isinstance(refused, Denial), refused
    assert refused.reason is Reason.REFERENCE_VALUE_MISMATCH


def test_an_unlisted_systemd_record_in_a_later_segment_is_denied(rig: Rig) -> None:
    """The way around: send attest's records first (nothing in them for a systemd-only
    reference to deny), then systemd's record alone after that base."""
    _systemd_extends(rig, WORD)
    policy = _listing(rig, "machine-id:another")
    verifier = rig.verifier(policy)
    first, second = log_prefix.records_of((rig.home / "runtime.cel").read_bytes())
    base = _add(rig, policy, verifier, None, first)
    assert isinstance(base, RuntimeLogBase) and base.count == 1, base
    refused = _add(rig, policy, verifier, base, second)
    assert isinstance(refused, Denial), refused
    assert refused.reason is Reason.REFERENCE_VALUE_MISMATCH
