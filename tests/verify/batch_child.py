"""Child process for the batch crash test: verify a batch, and stop between its appends
and its COMMIT.

Prints ``appended`` (flushed) once every member's acceptance and entry are written in
the group's transaction, then waits there for the parent's SIGKILL.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attest.audit.log import AuditLog
from attest.policy import load_policy
from attest.store import Store
from attest.store.db import Transaction
from attest.verify.verifier import Verifier

WAIT_S = 60


def main(url: str, home: str, policy: str, *artifacts: str) -> None:
    store = Store.open(url)
    verifier = Verifier(load_policy(policy), store, AuditLog.open(store, Path(home)))
    real = store.write

    @contextmanager
    def write() -> Iterator[Transaction]:
        with real() as tx:
            yield tx
            sys.stdout.write("appended\n")
            sys.stdout.flush()
            time.sleep(WAIT_S)  # the parent kills us here, before COMMIT

    setattr(store, "write", write)  # noqa: B010 - this process only: the hook it dies in
    verifier.verify_batch([Path(a).read_bytes() for a in artifacts])
    sys.exit("the batch committed: the parent did not kill us")


if __name__ == "__main__":
    main(*sys.argv[1:])
