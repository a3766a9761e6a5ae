"""attest.console.measurements: each runtime record of a host's report appraised alone
against the policy's reference values, the one that allowed it named or the mismatch
said; the page shows a bounded number of records, the refused ones always."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

from attest.console.measurements import MAX_SHOWN, NOT_REPLAYED, explain, replayed
from attest.eventlog.appraise import ReferenceValues
from attest.eventlog.cel import attest_record, encode_log, measurement_content
from attest.store.hostreports import ReportLog

GOOD = hashlib.sha256(b"good").digest()
BAD = hashlib.sha256(b"bad").digest()


def _policy(reference: ReferenceValues | None) -> Any:
    # explain reads the policy's reference values and the PCRs its quotes cover.
    return SimpleNamespace(reference=reference, log_sources=SimpleNamespace(
        covered=frozenset({15})))


def _log(names: list[tuple[str, bytes]]) -> bytes:
    return encode_log([attest_record(i, 15, measurement_content("file", name,
                                                                 {"sha256": value}),
                                     ["sha256"]) for i, (name, value) in enumerate(names)])


def test_each_record_names_the_reference_that_allowed_it_or_why_none_did() -> None:
    reference = ReferenceValues.from_dict({"runtime": [{"name": "app",
                                                        "digests": [GOOD.hex()]}]})
    log = _log([("app", GOOD), ("app", BAD), ("<b>other</b>", GOOD)])
    found = explain(ReportLog(log, base=5), _policy(reference))
    assert found.total == 3 and found.base == 5 and found.note is None
    allowed, wrong, unknown = found.records
    assert allowed.refused is None and "reference.runtime 'app'" in (allowed.allowed_by or "")
    assert allowed.pcr == 15 and allowed.digest.startswith("sha256:")
    assert wrong.allowed_by is None and wrong.code == "reference_value_mismatch"
    assert f"{BAD.hex()} is not a reference value for 'app'" in (wrong.refused or "")
    assert not (wrong.refused or "").startswith("record ")  # the label is the row's own
    assert unknown.refused == "no reference value for '<b>other</b>'"  # escaped by the page


def test_a_long_log_shows_a_bounded_page_with_every_refused_record() -> None:
    reference = ReferenceValues.from_dict({"runtime": [{"name": "app",
                                                        "digests": [GOOD.hex()]}]})
    names = [("app", GOOD)] * (MAX_SHOWN + 100)
    names[MAX_SHOWN + 50] = ("app", BAD)
    found = explain(ReportLog(_log(names)), _policy(reference))
    assert found.total == MAX_SHOWN + 100 and len(found.records) == MAX_SHOWN
    assert [m.number for m in found.records if m.refused] == [MAX_SHOWN + 50]
    numbers = [m.number for m in found.records]
    assert numbers == sorted(numbers)  # still in the log's order


def test_nothing_to_appraise_is_said_not_guessed() -> None:
    log = _log([("app", GOOD)])
    assert "appraises no runtime" in (explain(ReportLog(log), _policy(None)).note or "")
    broken = explain(ReportLog(b"\x1e{not json\n"), _policy(ReferenceValues.from_dict(
        {"runtime": []})))
    assert broken.records == () and "does not parse" in (broken.note or "")


def test_only_a_log_that_replayed_to_its_quote_is_appraised() -> None:
    assert replayed(True, ())
    assert replayed(False, ("reference_value_mismatch",))
    assert not replayed(False, ("eventlog_mismatch",))
    assert not replayed(False, ("eventlog_mismatch", "reference_value_mismatch"))
    assert not replayed(False, ())
    reference = ReferenceValues.from_dict({"runtime": [{"name": "app",
                                                        "digests": [GOOD.hex()]}]})
    shown = explain(ReportLog(_log([("app", GOOD)])), _policy(reference), replayed=False)
    assert shown.records == () and shown.note == NOT_REPLAYED


def test_a_record_no_section_appraises_is_said_not_appraised_not_allowed() -> None:
    """Under a policy with reference.systemd alone, attest's own records pass unappraised:
    the page said 'Allowed by not appraised: ...', an allowance no reference value made."""
    reference = ReferenceValues.from_dict({"systemd": [GOOD.hex()]})
    found = explain(ReportLog(_log([("app", BAD)])), _policy(reference))
    (record,) = found.records
    assert record.refused is None and record.allowed_by is None
    assert record.unappraised is not None and "no reference section" in record.unappraised
