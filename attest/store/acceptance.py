"""The steps of an acceptance, as functions over a connection inside one write transaction.

Each step either writes or raises; :meth:`attest.store.Store.accept` runs them in one
transaction so that a refusal at any step leaves nothing behind. Races between
verifier processes are settled by the database, not by reading first: the nonce
by a conditional UPDATE and its row count, the jti by the primary key.

Statements are built once, here, with bound parameters, and compiled once per
dialect (see :mod:`attest.store.prepared`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, not_, select, update
from sqlalchemy.exc import IntegrityError

from attest.store.engine import holds_write_lock
from attest.store.errors import NonceRejected, Replayed
from attest.store.prepared import Prepared
from attest.store.records import ArtifactRecord, NonceState, SeenClock
from attest.store.schema import ak_clocks, artifacts, nonces

_NONCE = Prepared(select(nonces.c.expires_at, nonces.c.used_at)
                  .where(nonces.c.nonce == bindparam("nonce")))
# The condition is evaluated under the row's write lock: of two concurrent consumers
# exactly one sees used_at IS NULL and updates one row.
_CONSUME = Prepared(update(nonces)
                    .where(nonces.c.nonce == bindparam("b_nonce"), nonces.c.used_at.is_(None),
                           nonces.c.expires_at > bindparam("now"))
                    .values(used_at=bindparam("used")))
# What the acceptance needs of an artifact stored under a jti: its digest (a replay, or
# another artifact under the same jti) and what its line rests on (revocations).
_STORED = Prepared(select(artifacts.c.sha256, artifacts.c.parent_jti, artifacts.c.kid,
                          artifacts.c.ak_name, artifacts.c.host)
                   .where(artifacts.c.jti == bindparam("jti")))
_INSERT_ARTIFACT = Prepared(insert(artifacts), tuple(artifacts.c.keys()))
# Never backwards within one boot epoch: a later clock of the same epoch stays.
_ADVANCE_CLOCK = Prepared(
                  update(ak_clocks)
                  .where(ak_clocks.c.ak_name == bindparam("ak"),
                         not_(and_(ak_clocks.c.reset_count == bindparam("resets"),
                                   ak_clocks.c.restart_count == bindparam("restarts"),
                                   ak_clocks.c.clock > bindparam("ms"))))
                  .values(clock=bindparam("ms"), reset_count=bindparam("resets"),
                          restart_count=bindparam("restarts"), seen_at=bindparam("now")))
_CLOCK_KNOWN = Prepared(select(ak_clocks.c.ak_name)
                        .where(ak_clocks.c.ak_name == bindparam("ak")))
_INSERT_CLOCK = Prepared(insert(ak_clocks), tuple(ak_clocks.c.keys()))


def nonce_state(conn: Connection, nonce: str, now: int) -> NonceState:
    row = _NONCE.first(conn, {"nonce": nonce})
    if row is None:
        return NonceState.UNKNOWN
    if row.used_at is not None:
        return NonceState.USED
    if row.expires_at <= now:
        return NonceState.EXPIRED
    return NonceState.USABLE


def consume_nonce(conn: Connection, nonce: str, now: int) -> None:
    """Mark the nonce used if, and only if, it is usable now; else raise NonceRejected."""
    if _CONSUME.rowcount(conn, {"b_nonce": nonce, "now": now, "used": now}) == 1:
        return
    state = nonce_state(conn, nonce, now)
    # USABLE here means another transaction consumed it between our UPDATE and SELECT
    # (possible under PostgreSQL's read committed): it is used.
    raise NonceRejected(NonceState.USED if state is NonceState.USABLE else state)


def stored_artifact(conn: Connection, jti: str) -> Any:
    """The row stored under ``jti`` (sha256, parent_jti, kid, ak_name, host), or None."""
    return _STORED.first(conn, {"jti": jti})


def insert_artifact(conn: Connection, record: ArtifactRecord, *, single_use: bool,
                    now: int, stored_sha256: str | None = None) -> None:
    """Record the accepted artifact; a jti already present is a replay when single use.

    An artifact allowed several uses may be presented again (its first row stands),
    but never a *different* artifact under the same jti: children name their parent
    by jti and digest, and the jti must keep meaning one artifact. ``stored_sha256``
    is the digest the transaction found under the jti already, if it looked.
    """
    if stored_sha256 is None:
        values = {"jti": record.jti, "sha256": record.sha256, "parent_jti": record.parent_jti,
                  "depth": record.depth, "exp": record.exp, "host": record.host,
                  "kid": record.kid, "ak_name": record.ak_name, "subject": record.subject,
                  "scope": record.scope, "accepted_at": now}
        try:
            if holds_write_lock(conn):
                # Nothing else inserts while this transaction holds the lock, and a
                # failed INSERT leaves an SQLite transaction usable: no savepoint needed.
                _INSERT_ARTIFACT.rowcount(conn, values)
            else:
                # A savepoint, so that a unique violation does not poison the transaction
                # on PostgreSQL when the multi-use case continues after it.
                with conn.begin_nested():
                    _INSERT_ARTIFACT.rowcount(conn, values)
            return
        except IntegrityError:
            stored = _STORED.first(conn, {"jti": record.jti})
            if stored is None:
                raise  # not a duplicate jti: some other constraint, a bug to surface
            stored_sha256 = stored.sha256
    if single_use or stored_sha256 != record.sha256:
        raise Replayed(record.jti)


def advance_clock(conn: Connection, ak_name: str, clock: SeenClock, now: int) -> None:
    """Store ``clock`` as the AK's last seen, never moving backwards within one boot epoch.

    Two quotes from one TPM may be accepted out of order; the stored value stays the
    latest of the epoch, so a later rollback check compares with the true high mark.
    A changed reset or restart count is a new epoch and replaces the old one.
    """
    params = {"ak": ak_name, "ms": clock.clock, "resets": clock.reset_count,
              "restarts": clock.restart_count, "now": now}
    for _ in range(2):
        if _ADVANCE_CLOCK.rowcount(conn, params) == 1:
            return
        if _CLOCK_KNOWN.first(conn, {"ak": ak_name}) is not None:
            return  # a later clock of this epoch is stored already: keep it
        try:
            with conn.begin_nested():
                _INSERT_CLOCK.rowcount(conn, {
                    "ak_name": ak_name, "clock": clock.clock, "reset_count": clock.reset_count,
                    "restart_count": clock.restart_count, "seen_at": now})
            return
        except IntegrityError:
            continue  # another verifier inserted this AK's first clock: compare with it
    raise RuntimeError(f"could not record the clock of AK {ak_name}")  # unreachable
