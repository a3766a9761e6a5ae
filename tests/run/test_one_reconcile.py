"""`attest run` measures and issues under one lock, with one reconciliation of the
runtime log and its PCR (issue 12): nothing can come between the measurement and the
quote, and the log and the PCR are read once. Counted on a real swtpm by wrapping the
library's own functions (each wrapper calls through)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from attest.artifact import jws
from attest.eventlog.cel import parse_cel
from attest.host import issue as issuance
from attest.host.run import prepare
from attest.host.runtime import log as runtime_log
from attest.host.runtime.log import RuntimeLog
from attest.tpm.device import TPM, open_tpm
from tests.conftest import Host


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    seen: Counter[str] = Counter()
    reconcile = runtime_log.reconcile

    def counting_reconcile(*args: Any, **kwargs: Any) -> runtime_log.Reconciliation:
        seen["reconcile"] += 1
        return reconcile(*args, **kwargs)

    # Both names the library calls it by (issuance imports it).
    monkeypatch.setattr(runtime_log, "reconcile", counting_reconcile)
    monkeypatch.setattr(issuance, "reconcile", counting_reconcile)
    locked = RuntimeLog.locked

    def counting_locked(self: RuntimeLog, *args: Any, **kwargs: Any
                        ) -> AbstractContextManager[None]:
        seen["lock"] += 1
        return locked(self, *args, **kwargs)

    monkeypatch.setattr(RuntimeLog, "locked", counting_locked)
    call = TPM.call

    def counting_call(self: TPM, doing: str, fn: Callable[..., Any], *args: Any,
                      **kwargs: Any) -> Any:
        seen[doing] += 1
        return call(self, doing, fn, *args, **kwargs)

    monkeypatch.setattr(TPM, "call", counting_call)
    return seen


@contextmanager
def _tpm(host: Host) -> Iterator[TPM]:
    with open_tpm(host.sim.tcti) as tpm:
        yield tpm


def test_run_measures_and_issues_under_one_lock_with_one_reconcile(
        fresh_host: Host, counted: Counter[str]) -> None:
    host = fresh_host
    host.ok("key", "create")
    before = len(RuntimeLog(host.home).read().records)
    counted.clear()
    with _tpm(host) as tpm:
        prepared = prepare(tpm, host.home, ["/bin/true"], subject="s", key_name="default",
                           nonce=None, ttl=60)
    prepared.executable.close()
    assert counted["reconcile"] == 1
    assert counted["lock"] == 1
    # The runtime PCR read once (to reconcile) and the sealed PCRs once: nothing re-read.
    assert counted["reading PCRs"] == 2
    # The artifact carries the measurement, and the PCR is what the log explains.
    records = parse_cel(jws.parse(prepared.artifact).claims.evidence.runtime_log).records
    assert len(records) == before + 1
    measured = records[-1].content
    assert "argv_digest" in measured and prepared.executable.digests["sha256"].hex() in str(
        measured)
    assert "ok" in host.ok("eventlog", "check").output
