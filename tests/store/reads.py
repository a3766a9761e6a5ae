"""What tests read back from a store: the rows a verification wrote, by the store's own
SQL and row builders. The verifier reads through ``Store.snapshot_in`` only; these
reads are for tests, so they are not part of the store's API."""

from __future__ import annotations

from attest.store import Store, epochs
from attest.store import revocations as revs
from attest.store.records import (
    ArtifactRecord,
    Enrollment,
    EpochRecord,
    NonceState,
    Revocation,
    RevocationKind,
    SeenClock,
)
from attest.store.store import (
    _ARTIFACT,
    _JTI_SEEN,
    _WITH_EK,
    _ancestry,
    _artifact,
    _enrollment,
    _hex,
    _last_clock,
)

_ENROLLMENTS_FOR = (_WITH_EK + "WHERE enrollments.host = :host "
                    "ORDER BY enrollments.enrolled_at, enrollments.ak_name")


def enrollments_for(store: Store, host: str) -> list[Enrollment]:
    """Every AK enrolled for ``host``, oldest first."""
    with store.read() as tx:
        return [_enrollment(tx, row) for row in tx.all(_ENROLLMENTS_FOR, {"host": host})]


def nonce_state(store: Store, nonce: str, now: int) -> NonceState:
    """As the verifier's snapshot reads it: a minted challenge by its MAC, expiry and
    the consumed rows; a nonce issued as a row by that row."""
    with store.read() as tx:
        return store.nonce_state_in(tx, nonce, now)[0]


def last_clock(store: Store, ak_name: bytes | str) -> SeenClock | None:
    """The clock of the latest quote accepted for this AK (in its latest boot epoch)."""
    with store.read() as tx:
        return _last_clock(tx, _hex(ak_name, "AK name"))


def epoch(store: Store, ak_name: bytes | str) -> EpochRecord | None:
    """The AK's current boot epoch and its clock-to-time bounds, if a quote was accepted."""
    with store.read() as tx:
        return epochs.current_epoch(tx, _hex(ak_name, "AK name"))


def artifact(store: Store, jti: str) -> ArtifactRecord | None:
    """The accepted artifact; ``revoked`` when it or anything it rests on is revoked."""
    with store.read() as tx:
        row = tx.first(_ARTIFACT, {"jti": jti})
        return None if row is None else _artifact(row, _ancestry(tx, jti, row))


def jti_seen(store: Store, jti: str) -> bool:
    with store.read() as tx:
        return tx.first(_JTI_SEEN, {"jti": jti}) is not None


def revocation_for(store: Store, *, jti: str | None = None, kid: str | None = None,
                   ak: bytes | str | None = None,
                   host: str | None = None) -> Revocation | None:
    """The first revocation among those named (jti, then key, AK, host), or None."""
    wanted: list[tuple[RevocationKind, str]] = []
    if jti is not None:
        wanted.append((RevocationKind.ARTIFACT, jti))
    if kid is not None:
        wanted.append((RevocationKind.KEY, _hex(kid, "key name")))
    if ak is not None:
        wanted.append((RevocationKind.AK, _hex(ak, "AK name")))
    if host is not None:
        wanted.append((RevocationKind.HOST, host))
    assert wanted, "revocation_for needs at least one of jti, kid, ak, host"
    with store.read() as tx:
        return revs.find(tx, wanted)


def ancestry_revoked(store: Store, jti: str) -> Revocation | None:
    """The nearest revocation of ``jti`` or of an ancestor (or their key, AK, host)."""
    with store.read() as tx:
        return revs.in_ancestry(tx, jti)
