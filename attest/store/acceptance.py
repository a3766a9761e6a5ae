"""The steps of an acceptance, as functions over one write transaction.

Each step either writes or raises; :meth:`attest.store.Store.accept` runs them in one
transaction so that a refusal at any step leaves nothing behind. Races between
verifier processes are settled by the database, not by reading first: the nonce
by a conditional UPDATE and its row count, the jti by the primary key.

The statements are SQL text that runs unchanged on SQLite and PostgreSQL
(:mod:`attest.store.db`).
"""

from __future__ import annotations

from attest.store.challenges import Challenge
from attest.store.db import Conflict, Row, Transaction
from attest.store.errors import NonceRejected, Replayed
from attest.store.records import ArtifactRecord, NonceState, SeenClock
from attest.store.schema import ak_clocks, artifact_approvals, artifacts, nonces

_NONCE = "SELECT expires_at, used_at FROM nonces WHERE nonce = :nonce"
# The condition is evaluated under the row's write lock: of two concurrent consumers
# exactly one sees used_at IS NULL and updates one row.
_CONSUME = ("UPDATE nonces SET used_at = :now "
            "WHERE nonce = :nonce AND used_at IS NULL AND expires_at > :now")
# What the acceptance needs of an artifact stored under a jti: its digest (a replay, or
# another artifact under the same jti) and what its line rests on (revocations).
_STORED = ("SELECT sha256, parent_jti, kid, ak_name, host, artifact_approvals.approval "
           "FROM artifacts LEFT JOIN artifact_approvals ON artifact_approvals.jti = "
           "artifacts.jti WHERE artifacts.jti = :jti")
_INSERT_APPROVAL = artifact_approvals.insert()
# ON CONFLICT on the key alone: a taken jti or nonce is a row count of 0, where a plain
# INSERT's unique violation would poison a PostgreSQL transaction and so needed a
# savepoint around it (two more round trips per acceptance, inside the group's lock).
# Under read committed, the INSERT waits for a concurrent one of the same key to end, as
# a plain one does: of two acceptances, exactly one inserts.
_INSERT_ARTIFACT = artifacts.insert() + " ON CONFLICT (jti) DO NOTHING"
# Never backwards within one boot epoch: a later clock of the same epoch stays.
_ADVANCE_CLOCK = ("UPDATE ak_clocks SET clock = :ms, reset_count = :resets, "
                  "restart_count = :restarts, seen_at = :now "
                  "WHERE ak_name = :ak AND NOT (reset_count = :resets "
                  "AND restart_count = :restarts AND clock > :ms)")
_INSERT_NONCE = nonces.insert() + " ON CONFLICT (nonce) DO NOTHING"
_CLOCK_KNOWN = "SELECT ak_name FROM ak_clocks WHERE ak_name = :ak"
_INSERT_CLOCK = ak_clocks.insert()


def nonce_state(tx: Transaction, nonce: str, now: int) -> NonceState:
    row = tx.first(_NONCE, {"nonce": nonce})
    if row is None:
        return NonceState.UNKNOWN
    if row.used_at is not None:
        return NonceState.USED
    if row.expires_at <= now:
        return NonceState.EXPIRED
    return NonceState.USABLE


def consume_nonce(tx: Transaction, nonce: str, now: int) -> None:
    """Mark the nonce used if, and only if, it is usable now; else raise NonceRejected."""
    if tx.execute(_CONSUME, {"nonce": nonce, "now": now}) == 1:
        return
    state = nonce_state(tx, nonce, now)
    # USABLE here means another transaction consumed it between our UPDATE and SELECT
    # (possible under PostgreSQL's read committed): it is used.
    raise NonceRejected(NonceState.USED if state is NonceState.USABLE else state)


def consume_challenge(tx: Transaction, challenge: Challenge, now: int) -> None:
    """Record the minted ``challenge`` (its MAC checked) as used, if it is unexpired and
    was never used; else raise NonceRejected.

    Its row (the primary key: its canonical text) is what makes it single use: of two
    acceptances answering it, on any replica, the second insert conflicts. The row
    stays until the challenge has expired (Store.purge_nonces); by then the expiry
    refuses it on its own.
    """
    if challenge.expires_at <= now:
        raise NonceRejected(NonceState.EXPIRED)
    values = {"nonce": challenge.text, "issued_at": challenge.issued_at,
              "expires_at": challenge.expires_at, "used_at": now}
    if tx.execute(_INSERT_NONCE, values) != 1:  # its row is there: used already
        raise NonceRejected(NonceState.USED)


def stored_artifact(tx: Transaction, jti: str) -> Row | None:
    """The row stored under ``jti`` (sha256, parent_jti, kid, ak_name, host, and the
    approval its key signed under or NULL), or None."""
    return tx.first(_STORED, {"jti": jti})


def record_approval(tx: Transaction, jti: str, approval_id: str) -> None:
    """Record the approval an accepted artifact's key signed under; the first stands (an
    artifact allowed several uses is presented again under the same approval)."""
    try:
        with tx.savepoint():
            tx.execute(_INSERT_APPROVAL, {"jti": jti, "approval": approval_id})
    except Conflict:
        pass  # recorded by its first acceptance: the same jti, the same artifact


def insert_artifact(tx: Transaction, record: ArtifactRecord, *, single_use: bool,
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
        if tx.execute(_INSERT_ARTIFACT, values) == 1:
            return
        stored = tx.first(_STORED, {"jti": record.jti})
        if stored is None:  # the jti's row is there, yet no row under it: not a replay
            raise Conflict(f"the artifact {record.jti} conflicts with a row that is gone")
        stored_sha256 = stored.sha256
    if single_use or stored_sha256 != record.sha256:
        raise Replayed(record.jti)


def advance_clock(tx: Transaction, ak_name: str, clock: SeenClock, now: int) -> None:
    """Store ``clock`` as the AK's last seen, never moving backwards within one boot epoch.

    Two quotes from one TPM may be accepted out of order; the stored value stays the
    latest of the epoch, so a later rollback check compares with the true high mark.
    A changed reset or restart count is a new epoch and replaces the old one.
    """
    params = {"ak": ak_name, "ms": clock.clock, "resets": clock.reset_count,
              "restarts": clock.restart_count, "now": now}
    for _ in range(2):
        if tx.execute(_ADVANCE_CLOCK, params) == 1:
            return
        if tx.first(_CLOCK_KNOWN, {"ak": ak_name}) is not None:
            # Under read committed the row may have been committed by another verifier
            # after our UPDATE saw none: compare with it once more. Still no row
            # updated: a later clock of this epoch is stored already, and it stays.
            tx.execute(_ADVANCE_CLOCK, params)
            return
        try:
            with tx.savepoint():
                tx.execute(_INSERT_CLOCK, {
                    "ak_name": ak_name, "clock": clock.clock, "reset_count": clock.reset_count,
                    "restart_count": clock.restart_count, "seen_at": now})
            return
        except Conflict:
            continue  # another verifier inserted this AK's first clock: compare with it
    raise RuntimeError(f"could not record the clock of AK {ak_name}")  # unreachable
