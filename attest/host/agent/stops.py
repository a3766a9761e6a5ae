"""The record of each supervised stop: a line on the agent's stderr and an entry in the
host's audit log (the one `attest audit` reads: $ATTEST_STORE, else
$ATTEST_HOME/verifier.db, signed with the log key in $ATTEST_HOME).

The stop itself never waits on its record: the process is signalled first
(attest.host.agent.supervisor), and a log that cannot take the entry costs a line on
stderr saying so, not the stop.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from attest.audit.entry import Entry, EntryKind, Outcome, fit
from attest.errors import AttestError
from attest.host.agent.client import visible
from attest.host.agent.supervisor import Stop

if TYPE_CHECKING:
    from attest.audit.log import AuditLog
    from attest.store import Store


def stop_entry(stop: Stop) -> Entry:
    """The audit entry of ``stop``: its jti, subject, reason code, pid and signals (no
    command line and no message: an entry holds codes and names, never free text)."""
    return Entry(kind=EntryKind.SUPERVISED_STOP,
                 decision=Outcome.STOP_FAILED if stop.failed else Outcome.STOPPED,
                 time=int(stop.time), reasons=(_code(stop.reason),), jti=fit(stop.jti),
                 subject=fit(stop.subject), pid=stop.pid, signals=stop.signals)


class StopLog:
    """Records stops (a Supervisor's ``record``). Thread-safe; opens the log on the
    first stop, so an agent that never stops anything never touches the store."""

    def __init__(self, home: Path, *, store_url: str | None = None,
                 stream: TextIO | None = None) -> None:
        self.home = home
        self._url = store_url
        self._stream = stream
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._log: AuditLog | None = None

    def __call__(self, stop: Stop) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stop.time))
        what = (f"could NOT stop (still running, still supervised: "
                f"{visible(stop.failed)})" if stop.failed else "stopped")
        said = (f"attest agent: {what} {visible(stop.program)} (pid {stop.pid}, "
                f"{visible(stop.jti)}, {visible(stop.subject)}) with "
                f"{'+'.join(stop.signals) or 'no signal'} at {when}: {visible(stop.reason)}: "
                f"{visible(stop.message)}")
        try:
            index = self._append(stop_entry(stop))
        except AttestError as exc:
            said += f"; NOT in the audit log: {visible(exc.message)}"
        except OSError as exc:  # the home cannot be made: the stop stands, said here
            said += f"; NOT in the audit log: {visible(str(exc))}"
        else:
            said += f"; audit entry {index}"
        print(said, file=self._stream or sys.stderr, flush=True)

    def _append(self, entry: Entry) -> int:
        with self._lock:
            if self._log is None:
                from attest.audit.log import AuditLog
                from attest.store import Store
                from attest.store.db import default_url

                self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
                url = self._url or os.environ.get("ATTEST_STORE") or default_url(self.home)
                self._store = Store.open(url)
                self._log = AuditLog.open(self._store, self.home)
            log = self._log
        return log.record(entry)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = self._log = None


def _code(reason: str) -> str:
    # A trigger's reason code comes from the verifier's answers or feed: bounded here,
    # escaped where it is shown.
    return fit(reason) or "internal_error"
