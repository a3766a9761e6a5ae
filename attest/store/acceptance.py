"""The steps of an acceptance, as functions over a connection inside one write transaction.

Each step either writes or raises; :meth:`attest.store.Store.accept` runs them in one
transaction so that a refusal at any step leaves nothing behind. Races between
verifier processes are settled by the database, not by reading first: the nonce
by a conditional UPDATE and its row count, the jti by the primary key.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, insert, not_, select, update
from sqlalchemy.exc import IntegrityError

from attest.store.errors import NonceRejected, Replayed
from attest.store.records import ArtifactRecord, NonceState, SeenClock
from attest.store.schema import ak_clocks, artifacts, nonces


def nonce_state(conn: Connection, nonce: str, now: int) -> NonceState:
    row = conn.execute(select(nonces.c.expires_at, nonces.c.used_at)
                       .where(nonces.c.nonce == nonce)).first()
    if row is None:
        return NonceState.UNKNOWN
    if row.used_at is not None:
        return NonceState.USED
    if row.expires_at <= now:
        return NonceState.EXPIRED
    return NonceState.USABLE


def consume_nonce(conn: Connection, nonce: str, now: int) -> None:
    """Mark the nonce used if, and only if, it is usable now; else raise NonceRejected."""
    # The condition is evaluated under the row's write lock: of two concurrent
    # consumers exactly one sees used_at IS NULL and updates one row.
    result = conn.execute(
        update(nonces)
        .where(nonces.c.nonce == nonce, nonces.c.used_at.is_(None), nonces.c.expires_at > now)
        .values(used_at=now))
    if result.rowcount == 1:
        return
    state = nonce_state(conn, nonce, now)
    # USABLE here means another transaction consumed it between our UPDATE and SELECT
    # (possible under PostgreSQL's read committed): it is used.
    raise NonceRejected(NonceState.USED if state is NonceState.USABLE else state)


def insert_artifact(conn: Connection, record: ArtifactRecord, *, single_use: bool,
                    now: int) -> None:
    """Record the accepted artifact; a jti already present is a replay when single use.

    An artifact allowed several uses may be presented again (its first row stands),
    but never a *different* artifact under the same jti: children name their parent
    by jti and digest, and the jti must keep meaning one artifact.
    """
    try:
        # A savepoint, so that a unique violation does not poison the transaction on
        # PostgreSQL when the multi-use case continues after it.
        with conn.begin_nested():
            conn.execute(insert(artifacts).values(
                jti=record.jti, sha256=record.sha256, parent_jti=record.parent_jti,
                depth=record.depth, exp=record.exp, host=record.host, kid=record.kid,
                ak_name=record.ak_name, subject=record.subject, scope=record.scope,
                accepted_at=now))
        return
    except IntegrityError:
        stored = conn.execute(select(artifacts.c.sha256)
                              .where(artifacts.c.jti == record.jti)).scalar_one_or_none()
        if stored is None:
            raise  # not a duplicate jti: some other constraint, a bug to surface
    if single_use or stored != record.sha256:
        raise Replayed(record.jti)


def advance_clock(conn: Connection, ak_name: str, clock: SeenClock, now: int) -> None:
    """Store ``clock`` as the AK's last seen, never moving backwards within one boot epoch.

    Two quotes from one TPM may be accepted out of order; the stored value stays the
    latest of the epoch, so a later rollback check compares with the true high mark.
    A changed reset or restart count is a new epoch and replaces the old one.
    """
    later_in_same_epoch = and_(ak_clocks.c.reset_count == clock.reset_count,
                               ak_clocks.c.restart_count == clock.restart_count,
                               ak_clocks.c.clock > clock.clock)
    values = {"clock": clock.clock, "reset_count": clock.reset_count,
              "restart_count": clock.restart_count, "seen_at": now}
    for _ in range(2):
        result = conn.execute(update(ak_clocks)
                              .where(ak_clocks.c.ak_name == ak_name, not_(later_in_same_epoch))
                              .values(**values))
        if result.rowcount == 1:
            return
        if conn.execute(select(ak_clocks.c.ak_name)
                        .where(ak_clocks.c.ak_name == ak_name)).first() is not None:
            return  # a later clock of this epoch is stored already: keep it
        try:
            with conn.begin_nested():
                conn.execute(insert(ak_clocks).values(ak_name=ak_name, **values))
            return
        except IntegrityError:
            continue  # another verifier inserted this AK's first clock: compare with it
    raise RuntimeError(f"could not record the clock of AK {ak_name}")  # unreachable
