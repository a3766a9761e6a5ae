"""The layout issue 12 asks for, held in place: names that do not collide, read methods
only tests called out of the store's API, dead code gone."""

from __future__ import annotations

import importlib

import pytest

from attest.store import Store

TEST_ONLY_READS = ("artifact", "jti_seen", "epoch", "last_clock", "nonce_state",
                   "enrollments_for", "revocation_for", "ancestry_revoked", "check_schema")


@pytest.mark.parametrize("method", TEST_ONLY_READS)
def test_reads_only_tests_make_are_not_the_stores_api(method: str) -> None:
    # tests/store/reads.py has them, over the store's SQL.
    assert not hasattr(Store, method)


@pytest.mark.parametrize(("module", "name"), [
    ("attest.evidence.signatures", "curve_for"),
    ("attest.evidence.signatures", "as_public_key"),
    ("attest.audit.hooks", "record_enrollment"),
    ("attest.audit.hooks", "record_revocation"),
    ("attest.store.records", "SeenClock.same_epoch"),
])
def test_code_nothing_calls_is_gone(module: str, name: str) -> None:
    found: object = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    assert found is None, f"{module}.{name}"
