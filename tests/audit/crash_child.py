"""Child process for the crash test: append forever from a few threads.

After each append returns (its transaction committed), prints ``<index> <jti>`` and
flushes, so the parent knows which appends were acknowledged before it kills us.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from attest.audit import AuditLog, Entry, EntryKind, HeadPolicy, Outcome
from attest.store import Store

THREADS = 4


def main(url: str, home: str, run: str) -> None:
    log = AuditLog.open(Store.open(url), Path(home), heads=HeadPolicy(every=8, interval=0.05))
    lock = threading.Lock()

    def append(worker: int) -> None:
        n = 0
        while True:
            jti = f"{run}-{worker}-{n}"
            index = log.record(Entry(EntryKind.DECISION, Outcome.ACCEPTED, time=n, jti=jti))
            with lock:
                sys.stdout.write(f"{index} {jti}\n")
                sys.stdout.flush()
            n += 1

    threads = [threading.Thread(target=append, args=(w,), daemon=True) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    threads[0].join()


if __name__ == "__main__":
    main(*sys.argv[1:4])
