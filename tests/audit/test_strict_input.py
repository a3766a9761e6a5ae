"""Audit input read back from outside (receipts, entries) is strict JSON: a member
written twice is refused, not resolved last-wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.audit import AuditLog, HeadPolicy
from attest.audit.entry import claimed_index
from attest.audit.proofs import ProofError
from attest.store import Store, default_url
from tests.audit.conftest import fill, run


def test_a_receipt_with_a_member_twice_is_refused(home: Path, tmp_path: Path) -> None:
    with Store.open(default_url(home)) as store:
        fill(AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9)), 5)
    key = run(home, "key").output.strip()
    receipt = run(home, "prove", "--index", "3").output
    assert json.loads(receipt)["index"] == 3
    path = tmp_path / "receipt.json"
    path.write_text(receipt)
    assert run(tmp_path, "check-proof", str(path), "--key", key).exit_code == 0
    # A reader that takes the first "index" and one that takes the last disagree.
    path.write_text('{"index": 0,' + receipt.lstrip()[1:])
    result = run(tmp_path, "check-proof", str(path), "--key", key)
    assert result.exit_code == 1, result.output  # refused evidence, not bad usage
    assert "proof_invalid" in result.output and "'index' appears twice" in result.output


def test_an_entry_with_a_member_twice_has_no_index() -> None:
    assert claimed_index(b'{"index": 4}') == 4
    with pytest.raises(ProofError):
        claimed_index(b'{"index": 1, "index": 4}')
