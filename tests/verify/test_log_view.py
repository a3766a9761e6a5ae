"""attest.verify.appraisal.view_logs, the log check artifacts and bundles share: each CEL
record's content is canonicalised and hashed once (check_content_bound), the appraisal
relying on that check; and the runtime log's prefix state made only when asked.

Pure: CEL logs built in the test, a policy parsed from text (no TPM)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from attest.eventlog import cel
from attest.eventlog.appraise import appraise
from attest.eventlog.cel import CelRecord, attest_record, encode_log, measurement_content
from attest.policy import VerifierPolicy, parse_policy
from attest.reasons import Reason
from attest.verify.appraisal import view_logs

LS = hashlib.sha256(b"ls").digest()
CAT = hashlib.sha256(b"cat").digest()
RUNTIME_PCR = 15

_POLICY = f"""version: 1
id: "log-view"
ek_roots: []
enrollment: store
pcrs:
  bank: sha256
  sealed: [0]
  runtime: {RUNTIME_PCR}
key_policy:
  kind: pcr
  sealed_values:
    "0": "{'00' * 32}"
reference:
  bank: sha256
  runtime:
    - name: "/usr/bin/ls"
      digests: ["{LS.hex()}"]
rules:
  - subjects: ["*"]
    actions: ["exec"]
    argv: ["*"]
    hosts: ["*"]
"""


@pytest.fixture
def policy(tmp_path: Path) -> VerifierPolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(_POLICY)
    return parse_policy(_POLICY.encode(), source=str(path), base_dir=tmp_path, path=path)


def _record(recnum: int, name: str, digest: bytes) -> CelRecord:
    content = measurement_content("command", name, {"sha256": digest}, path=name)
    return attest_record(recnum, RUNTIME_PCR, content, ["sha256"])


def _forged(record: CelRecord, **content: object) -> CelRecord:
    """``record`` with its content edited and the digests it extended kept."""
    return CelRecord(record.index, record.recnum, record.pcr, record.digests,
                     record.content_type, dict(record.content, **content))


def test_an_allowed_log_is_appraised_and_its_state_made_only_when_asked(
        policy: VerifierPolicy) -> None:
    log = encode_log([_record(0, "/usr/bin/ls", LS), _record(1, "/usr/bin/ls", LS)])
    whole = view_logs(log, None, policy)
    bare = view_logs(log, None, policy, with_state=False)
    assert whole.problem is None and whole.appraisal is None
    assert whole.state is not None and whole.state.count == 2
    # Without the state, the very same view: the state decides nothing of a bundle.
    assert bare.state is None
    assert (bare.events, bare.replayed, bare.locality, bare.problem, bare.appraisal,
            bare.commands) == (whole.events, whole.replayed, whole.locality, whole.problem,
                               whole.appraisal, whole.commands)


@pytest.mark.parametrize("with_state", [True, False])
def test_content_edited_to_an_allowed_measurement_is_still_an_eventlog_mismatch(
        policy: VerifierPolicy, with_state: bool) -> None:
    """The appraisal no longer hashes each content again (bound_checked): an edit that
    would pass the reference values (cat renamed ls, with ls's digest) must still be
    caught by the one content check, before any appraisal."""
    cat = _record(1, "/usr/bin/cat", CAT)
    for forged in (_forged(cat, name="/usr/bin/ls", path="/usr/bin/ls",
                           digest={"sha256": LS.hex()}),
                   _forged(cat, digest={"sha256": LS.hex()}, name="/usr/bin/ls")):
        log = encode_log([_record(0, "/usr/bin/ls", LS), forged])
        view = view_logs(log, None, policy, with_state=with_state)
        assert view.problem is not None
        assert view.problem.reason is Reason.EVENTLOG_MISMATCH
        assert "altered" in view.problem.message


def test_an_unlisted_measurement_is_a_reference_mismatch(policy: VerifierPolicy) -> None:
    log = encode_log([_record(0, "/usr/bin/ls", LS), _record(1, "/usr/bin/cat", CAT)])
    view = view_logs(log, None, policy, with_state=False)
    assert view.problem is None
    assert view.appraisal is not None
    assert view.appraisal.reason is Reason.REFERENCE_VALUE_MISMATCH


def test_each_record_content_is_canonicalised_once(policy: VerifierPolicy,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The saving itself: one content digest per attest record, not one for the content
    check and another for the appraisal."""
    calls: list[int] = []
    real = cel.content_digests

    def counted(content: object, banks: object) -> dict[str, bytes]:
        calls.append(1)
        return real(content, banks)  # type: ignore[arg-type]

    log = encode_log([_record(i, "/usr/bin/ls", LS) for i in range(3)])
    monkeypatch.setattr(cel, "content_digests", counted)
    view = view_logs(log, None, policy, with_state=False)
    assert view.problem is None and view.appraisal is None
    assert len(calls) == 3


def test_appraise_alone_still_checks_each_content(policy: VerifierPolicy) -> None:
    """Without the caller's word (bound_checked), appraise checks each content itself: a
    caller that did not run check_content_bound cannot be given an edited record."""
    forged = _forged(_record(0, "/usr/bin/cat", CAT), name="/usr/bin/ls",
                     digest={"sha256": LS.hex()})
    assert policy.reference is not None
    with pytest.raises(cel.EventLogMismatch):
        appraise([forged], policy.reference, covered={RUNTIME_PCR})
