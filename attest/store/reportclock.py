"""The TPM clock of each host's last state-moving report, forgotten on re-enrollment.

attest.store.hosttrust refuses a report quoted no later than the one that last moved the
host's state (a report held back, then sent). A host enrolled again (a new TPM, or an AK
re-admitted after a TPM reset) quotes on a clock that may have restarted below it: its
reports would move nothing, forever. So enrolling and re-admitting forget the clock, in
their own transaction. The old AK's held-back reports are refused by the verifier (a
revoked or replaced AK, single-use challenges), not by this clock.
"""

from __future__ import annotations

from attest.store.db import Transaction

_FORGET_CLOCK = "UPDATE host_trust SET report_clock = NULL WHERE host = :host"
_FORGET_AK_CLOCK = ("UPDATE host_trust SET report_clock = NULL WHERE host IN "
                    "(SELECT host FROM enrollments WHERE ak_name = :ak)")


def forget(tx: Transaction, *, host: str | None = None,
           ak_name: str | None = None) -> None:
    """Forget the report clock of ``host``, or of the host ``ak_name`` is enrolled for."""
    if host is not None:
        tx.execute(_FORGET_CLOCK, {"host": host})
    if ak_name is not None:
        tx.execute(_FORGET_AK_CLOCK, {"ak": ak_name})
