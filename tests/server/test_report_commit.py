"""POST /v1/reports' common case on a real service and a real swtpm host: a report of a
host that stays trusted is written in ONE transaction with its acceptance (the verifier's
group commit), its time moved and nothing logged but its decision; a report that changes
the state is still logged as a change (tests/server/test_reports.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from attest.store.db import Transaction
from tests.server.test_admin import _token
from tests.server.test_reports import (
    MAX_AGE,
    Continuous,
    _host,
    _report,
    _state_entries,
    continuous,
)

__all__ = ["continuous"]


def _count_writes(monkeypatch: pytest.MonkeyPatch, svc: Continuous) -> list[int]:
    """How many write transactions the service's store opens from now on."""
    store = svc.client.app.state.service.store  # type: ignore[attr-defined]
    opened = [0]
    write: Callable[[], AbstractContextManager[Transaction]] = store.write

    def counting() -> AbstractContextManager[Transaction]:
        opened[0] += 1
        return write()

    monkeypatch.setattr(store, "write", counting)
    return opened


def test_an_unchanged_report_is_one_write_transaction(
        continuous: Continuous, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _report(continuous)["host_state"]["changed"] is True  # first: a change, logged
    continuous.clock.now += 5
    opened = _count_writes(monkeypatch, continuous)
    report = _report(continuous)
    assert report["accepted"] is True, report
    state = report["host_state"]
    assert state["changed"] is False and state["state"] == "trusted"
    assert state["last_report_at"] == int(continuous.clock.now)
    assert opened[0] == 1  # the decision's own: no second one for the trust state
    _, token = _token(continuous)
    seen = _host(continuous, token)
    assert seen["last_report_at"] == int(continuous.clock.now) and seen["state"] == "trusted"
    assert [e["decision"] for e in _state_entries(continuous, token)] == ["trusted"]


def test_a_stale_hosts_report_is_still_a_logged_change(
        continuous: Continuous, monkeypatch: pytest.MonkeyPatch) -> None:
    """The short path must not carry a host back from stale unlogged."""
    assert _report(continuous)["accepted"] is True
    continuous.clock.now += MAX_AGE + 1  # within the clock skew the TPM clock allows
    continuous.client.app.state.stale_sweep.once()  # type: ignore[attr-defined]
    opened = _count_writes(monkeypatch, continuous)
    report = _report(continuous)
    assert report["accepted"] is True, report
    assert report["host_state"]["changed"] is True and report["host_state"]["state"] == "trusted"
    assert opened[0] == 2  # the decision's, then the change with its audit entry
    _, token = _token(continuous)
    assert [e["decision"] for e in _state_entries(continuous, token)] == [
        "trusted", "stale", "trusted"]


