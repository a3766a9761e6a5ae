"""A value of another type in any column of the verifier's store (SQLite keeps whatever
an UPDATE stores) is a denial with a reason, never an internal error (issue 11, item 3b).

Real artifacts from a swtpm, a real SQLite store; each change made with sqlite3 on a
copy of a store that accepted one artifact, then a new artifact verified on the copy.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

from attest.store.rowtypes import StoreTampered
from attest.store.schema import TABLES
from tests.verify.rig import Rig, accepted

# A TEXT where an INTEGER or BLOB is written, an INTEGER where TEXT is, a REAL, a huge TEXT.
_CHANGES = ("'tampered'", "12345", "1.5", "hex(randomblob(300000))")


def test_a_changed_column_type_in_the_store_is_a_denial_not_a_crash(rig: Rig) -> None:
    store = rig.store("verifier")
    rig.enroll(store)
    verifier = rig.verifier(rig.policy(trusted_aks=[]), store)
    accepted(rig.verify_logged(verifier, rig.issue()))
    store.close()
    base = rig.tmp / "verifier"
    outcomes: dict[str, str] = {}
    tried = refused = 0
    for table in TABLES:
        for column in table.columns:
            for value in _CHANGES:
                name = f"{table.name}.{column.name}={value[:12]}"
                copy = rig.tmp / f"copy-{tried}"
                shutil.copytree(base, copy)
                with closing(sqlite3.connect(copy / "verifier.db",
                                             isolation_level=None)) as db:
                    try:
                        changed = db.execute(
                            f"UPDATE {table.name} SET {column.name} = {value}"  # noqa: S608
                            f" WHERE typeof({column.name}) != typeof({value})").rowcount
                    except sqlite3.Error:
                        changed = 0  # SQLite refused it (a key, a NOT NULL, a check)
                if changed <= 0:
                    shutil.rmtree(copy)
                    continue
                tried += 1
                try:
                    copied = rig.store(copy.name)
                except StoreTampered as exc:  # the schema's own rows: refused at open
                    assert exc.reason is not None and "changed outside attest" in exc.message
                    continue
                decision = rig.verify_logged(rig.verifier(rig.policy(trusted_aks=[]), copied),
                                             rig.issue())
                if "internal_error" in decision.reasons:
                    outcomes[name] = decision.denials[0].message
                refused += "audit_unavailable" in decision.reasons
    assert tried > 20  # the rows exist: the changes were made
    # The rows this verification reads (enrollment, clocks, seals...) are named as changed.
    assert refused > 20
    assert outcomes == {}
