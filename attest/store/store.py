"""The verifier's persistent state: enrollments, nonces, TPM clocks, accepted artifacts,
revocations. One :class:`Store` per process; it is safe to share between threads.

Methods never read the clock: time comes in as ``now`` (epoch seconds), so a test or
a replica decides what "now" is, and every decision is reproducible.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType

from attest.errors import StoreUnavailable, UsageError
from attest.store import (
    acceptance,
    approvals,
    challenges,
    epochs,
    identities,
    integrity,
    migrations,
    prefixes,
    reportclock,
    servicekeys,
)
from attest.store import revocations as revs
from attest.store.db import Conflict, Database, Row, Transaction, open_database
from attest.store.ddl import Table
from attest.store.errors import NonceRejected, Revoked
from attest.store.identities import HostMove
from attest.store.migrations import Migration
from attest.store.migrations import serialize as migrations_lock
from attest.store.records import (
    ApprovalUse,
    ArtifactRecord,
    Enrollment,
    LogPrefix,
    NonceState,
    Revocation,
    RevocationKind,
    SeenClock,
    Snapshot,
)
from attest.store.schema import (
    MAX_HEX_NAME,
    MAX_HOST,
    MAX_JTI,
    MAX_NONCE,
    STORE_COMPONENT,
    STORE_SCHEMA_VERSION,
    TABLES,
    enrollments,
    hosts,
    schema_versions,
)

# The random part of a nonce issued before challenges carried a MAC (a row each): such
# rows are honoured until they expire.
NONCE_BYTES = 32
_HEX = re.compile(r"^[0-9a-f]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY_NAME = re.compile(r"(?:[0-9a-f]{2})+")  # a TPM name as the store keys it (fullmatch)
_APPROVAL_ID = re.compile(r"[0-9a-f]{64}")  # attest.evidence.approval's ids (fullmatch)

# Each enrollment with the EK its AK was activated under (ek_id; NULL when not recorded).
# And its seal (NULL when it has none: see attest.audit.seals), read in the same query so
# that the audited verifier checks the seal over exactly the values it then trusts.
_WITH_EK = ("SELECT enrollments.*, ak_eks.ek AS ek_id, enrollment_seals.mac AS seal "
            "FROM enrollments "
            "LEFT JOIN ak_eks ON ak_eks.ak_name = enrollments.ak_name "
            "LEFT JOIN enrollment_seals ON enrollment_seals.ak_name = enrollments.ak_name ")
_ENROLLMENT = _WITH_EK + "WHERE enrollments.ak_name = :ak"
_CLOCK = "SELECT clock, reset_count, restart_count FROM ak_clocks WHERE ak_name = :ak"
_FORGET_CLOCK = "DELETE FROM ak_clocks WHERE ak_name = :ak"
_NONCE_ISSUED = "SELECT issued_at FROM nonces WHERE nonce = :nonce"
_NONCE_CONSUMED = "SELECT used_at FROM nonces WHERE nonce = :nonce"
_TABLE_NAMES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": ("SELECT table_name AS name FROM information_schema.tables "
                   "WHERE table_schema = current_schema()"),
}
# With its seal (NULL when none: attest.audit.seals), read in the same query so that the
# audited verifier checks the seal over exactly the values lineage then relies on.
_ARTIFACT = ("SELECT artifacts.*, artifact_approvals.approval, artifact_seals.mac AS seal "
             "FROM artifacts "
             "LEFT JOIN artifact_approvals ON artifact_approvals.jti = artifacts.jti "
             "LEFT JOIN artifact_seals ON artifact_seals.jti = artifacts.jti "
             "WHERE artifacts.jti = :jti")
_JTI_SEEN = "SELECT jti FROM artifacts WHERE jti = :jti"
_PURGE_NONCES = "DELETE FROM nonces WHERE expires_at < :before"
_SCHEMA_VERSION = "SELECT version FROM schema_versions WHERE component = :component"
_INSERT_SCHEMA_VERSION = schema_versions.insert()
_UPDATE_SCHEMA_VERSION = ("UPDATE schema_versions SET version = :version "
                          "WHERE component = :component")
_UPDATE_HOST = "UPDATE hosts SET last_enrolled_at = :last_enrolled_at WHERE host = :host"
_INSERT_HOST = hosts.insert()
_UPDATE_ENROLLMENT = ("UPDATE enrollments SET host = :host, ak_public = :ak_public, "
                      "ak_qualified_name = :ak_qualified_name, "
                      "ek_certificate = :ek_certificate, updated_at = :updated_at "
                      "WHERE ak_name = :ak_name")
_INSERT_ENROLLMENT = enrollments.insert()
# An enrollment written again loses its seal: only the caller that seals (the audited
# `attest enroll`, attest.audit.seals) gives it a new one, in the same transaction.
_UNSEAL = "DELETE FROM enrollment_seals WHERE ak_name = :ak"

# What runs last in a transaction that changes trust: its audit entry, so that the change
# and its entry commit together or not at all.
InTransaction = Callable[[Transaction], None]
# The same for an enrollment, given the host id's move if it made one, and for a host's
# revocation, given everything it revoked (the host, its EKs, their AKs).
EnrollmentHook = Callable[[Transaction, HostMove | None], None]
RevocationHook = Callable[[Transaction, list[tuple[RevocationKind, str]]], None]


class Store:
    """Open with :meth:`open`; close with :meth:`close` or a ``with`` block."""

    def __init__(self, database: Database) -> None:
        self._database = database
        # Every component's tables ensured so far: what the schema check holds them to.
        self._tables: dict[str, Table] = {}
        # The deployment's challenge MAC key, once read (attest.store.challenges).
        self._challenge_key: bytes | None = None
        self._key_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, create the schema on first use, and check its version.

        ``sqlite:///PATH`` runs on the standard library's sqlite3; any other URL
        (``postgresql+psycopg://...``) through SQLAlchemy (see :mod:`attest.store.db`).
        """
        store = cls(open_database(url))
        try:
            store.ensure_schema(STORE_COMPONENT, STORE_SCHEMA_VERSION, TABLES,
                                migrations.STORE)
        except BaseException:
            store.close()
            raise
        return store

    @property
    def database(self) -> Database:
        """The database the store keeps its tables in (and the audit log its own)."""
        return self._database

    def close(self) -> None:
        self._database.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def ensure_schema(self, component: str, version: int, tables: Sequence[Table],
                      migrations: Mapping[int, Migration] | None = None) -> None:
        """Create ``tables`` if ``component`` has no schema yet, migrate an older one to
        ``version`` (``migrations``: the step from each older version to the next, see
        :mod:`attest.store.migrations`), refuse a newer one.

        Public so that other components (the audit log) keep their tables in the same
        database, under their own name and version.
        """
        # Two processes opening a fresh database race to create it: the schema lock
        # serializes them (attest.store.migrations.serialize); a Conflict left over (a
        # concurrent opener without the lock: an older attest) is retried once.
        for attempt in range(2):
            try:
                with self.write() as tx:
                    migrations_lock(tx)
                    self._ensure_schema(tx, component, version, tables, migrations or {})
                    self._tables.update((table.name, table) for table in tables)
                    integrity.check_schema(tx, self._tables.values())
                return
            except Conflict:
                if attempt:
                    raise

    def _ensure_schema(self, tx: Transaction, component: str, version: int,
                       tables: Sequence[Table], migrations: Mapping[int, Migration]) -> None:
        for statement in schema_versions.create(tx.dialect):
            tx.execute(statement)
        found = tx.scalar(_SCHEMA_VERSION, {"component": component})
        if found is None:
            for table in tables:
                for statement in table.create(tx.dialect):
                    tx.execute(statement)
            tx.execute(_INSERT_SCHEMA_VERSION, {"component": component, "version": version})
            return
        if found > version:
            raise StoreUnavailable(
                f"the {component} schema in {self._database.where} is version {found}; this "
                f"attest knows up to {version}", hint="upgrade attest, or use another store")
        if found < version:
            missing = [step for step in range(found, version) if step not in migrations]
            if missing:
                raise StoreUnavailable(
                    f"the {component} schema in {self._database.where} is version {found}, "
                    f"and this attest has no migration from version {missing[0]}",
                    hint="migrate it with the attest releases in between, or use a new store")
            for step in range(found, version):
                migrations[step](tx)
            tx.execute(_UPDATE_SCHEMA_VERSION, {"component": component, "version": version})
        # Tables added within this version: a database made before them gains them. Only
        # missing ones are created, so a role without DDL rights opens a complete database.
        present = {row.name for row in tx.all(_TABLE_NAMES[tx.dialect])}
        for table in tables:
            if table.name not in present:
                for statement in table.create(tx.dialect):
                    tx.execute(statement)

    def write(self) -> AbstractContextManager[Transaction]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        return self._database.write()

    def read(self) -> AbstractContextManager[Transaction]:
        """One read transaction: a consistent snapshot for several queries (on SQLite)."""
        return self._database.read()

    # -- enrollment --------------------------------------------------------------------

    def enroll(self, host: str, ak_name: bytes, ak_public: bytes, ak_qualified_name: bytes,
               ek_certificate: bytes | None, now: int, *, ek: str | None = None,
               move_host: bool = False,
               in_transaction: EnrollmentHook | None = None) -> HostMove | None:
        """Admit an AK, activated under the EK ``ek`` (its id: SHA-256 of the EK's
        SubjectPublicKeyInfo, hex), for a host; enrolling a known AK again replaces its
        record.

        Refused (EnrollmentRefused) when the AK, the EK or the host is revoked, when the
        AK is enrolled under another host id or EK, or when the host id belongs to
        another EK, unless ``move_host``: then the host id moves to ``ek`` and the move
        is returned for the caller to audit (see :mod:`attest.store.identities`).
        ``in_transaction`` runs last in the same transaction, with the move (the audit
        entries and the enrollment's seal go there): if it raises, nothing is enrolled.
        The AK's previous seal, if any, is dropped: an enrollment made without the log
        key (no ``in_transaction`` sealing it) is not trusted by the audited verifier.
        """
        _host_id(host)
        name = _hex(ak_name, "AK name")
        if ek is not None:
            identities.ek_id(ek)
        # Two TPMs racing for a new host id: the loser's binding insert conflicts, and
        # its second round sees the winner's binding and is refused like any other.
        for attempt in range(2):
            try:
                with self.write() as tx:
                    moved = identities.admit(tx, host=host, ak_name=name, ek=ek, now=now,
                                             move_host=move_host)
                    _upsert(tx, _UPDATE_HOST, _INSERT_HOST,
                            {"host": host, "first_enrolled_at": now, "last_enrolled_at": now})
                    _upsert(tx, _UPDATE_ENROLLMENT, _INSERT_ENROLLMENT,
                            {"ak_name": name, "host": host, "ak_public": ak_public,
                             "ak_qualified_name": ak_qualified_name,
                             "ek_certificate": ek_certificate, "enrolled_at": now,
                             "updated_at": now})
                    tx.execute(_UNSEAL, {"ak": name})
                    reportclock.forget(tx, host=host)  # its clock may restart
                    if in_transaction is not None:
                        in_transaction(tx, moved)
                return moved
            except Conflict:
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def enrollment(self, ak_name: bytes | str) -> Enrollment | None:
        name = _hex(ak_name, "AK name")
        with self.read() as tx:
            row = tx.first(_ENROLLMENT, {"ak": name})
            return None if row is None else _enrollment(tx, row)

    # -- nonces ------------------------------------------------------------------------

    def issue_nonce(self, ttl: int, now: int) -> str:
        """A fresh single-use challenge, usable until now + ttl: random bytes and the
        times under the deployment's MAC key (attest.store.challenges). Writes nothing
        (but the key, the first time any replica issues one); single use is recorded
        when an artifact answering it is accepted."""
        if not 0 < ttl <= challenges.MAX_LIFETIME_S:
            raise UsageError(f"a nonce TTL must be 1 to {challenges.MAX_LIFETIME_S} seconds "
                             f"(a week), not {ttl}")
        key = self.challenge_key(now)
        return challenges.mint(key, secrets.token_bytes(challenges.RANDOM_BYTES), now, now + ttl)

    def challenge_key(self, now: int) -> bytes:
        """The deployment's challenge MAC key, created in the database if no replica has
        one yet (attest.store.servicekeys): read once per process."""
        key = self._challenge_key
        if key is not None:
            return key
        with self._key_lock:
            if self._challenge_key is None:
                with self.read() as tx:
                    found = servicekeys.find(tx, servicekeys.CHALLENGE_KEY,
                                             challenges.KEY_BYTES)
                if found is None:
                    with self.write() as tx:
                        found = servicekeys.ensure(tx, servicekeys.CHALLENGE_KEY,
                                                   challenges.KEY_BYTES, now)
                self._challenge_key = found
            return self._challenge_key

    def _known_challenge_key(self, tx: Transaction) -> bytes | None:
        """The challenge key if the database has one, read in ``tx`` (which writes
        nothing): none means no challenge was ever issued, so none is valid."""
        key = self._challenge_key
        if key is None:
            key = servicekeys.find(tx, servicekeys.CHALLENGE_KEY, challenges.KEY_BYTES)
            if key is not None:
                with self._key_lock:
                    self._challenge_key = key
        return key

    def _challenge(self, tx: Transaction, nonce: str) -> challenges.Challenge | None:
        """The minted challenge ``nonce`` spells under this deployment's key, or None."""
        key = self._known_challenge_key(tx)
        return None if key is None else challenges.read(key, nonce)

    def precheck_nonce(self, nonce: str, now: int) -> NonceState | None:
        """UNKNOWN or EXPIRED for a minted challenge whose MAC or expiry fails at ``now``;
        None for one that passes (its use is the snapshot's to read) or for any other
        text (a nonce issued as a row). Reads no row once the key is known."""
        if len(nonce) > MAX_NONCE or not challenges.looks_minted(nonce):
            return None
        key = self._challenge_key
        if key is None:
            with self.read() as tx:
                key = self._known_challenge_key(tx)
        found = None if key is None else challenges.read(key, nonce)
        if found is None:
            return NonceState.UNKNOWN
        return NonceState.EXPIRED if found.expires_at <= now else None

    def nonce_state_in(self, tx: Transaction, nonce: str,
                       now: int) -> tuple[NonceState, int | None]:
        """The state of ``nonce`` at ``now`` and, when usable, when it was issued.

        A minted challenge is judged on its MAC, then its expiry, before any row is
        read: a forged or expired one costs one HMAC. Only a valid one is looked up
        among the consumed. Any other text is looked up as a row a store issued
        before challenges (or is unknown)."""
        if len(nonce) > MAX_NONCE:
            return NonceState.UNKNOWN, None
        if challenges.looks_minted(nonce):
            found = self._challenge(tx, nonce)
            if found is None:
                return NonceState.UNKNOWN, None
            if found.expires_at <= now:
                return NonceState.EXPIRED, None
            if tx.first(_NONCE_CONSUMED, {"nonce": found.text}) is not None:
                return NonceState.USED, None
            return NonceState.USABLE, found.issued_at
        state = acceptance.nonce_state(tx, nonce, now)
        if state is not NonceState.USABLE:
            return state, None
        return state, tx.scalar(_NONCE_ISSUED, {"nonce": nonce})

    def nonce_issued_at(self, nonce: str) -> int | None:
        """When ``nonce`` was issued (a minted challenge's MAC-checked time, or a nonce
        row's), used or not; None for text this store never issued. How fresh a report
        on it can claim to be (attest.server.reports): its quote was made after this."""
        if len(nonce) > MAX_NONCE:
            return None
        key = self._challenge_key
        if key is not None and challenges.looks_minted(nonce):  # no read: the hot path
            found = challenges.read(key, nonce)
            return None if found is None else found.issued_at
        with self.read() as tx:
            if challenges.looks_minted(nonce):
                found = self._challenge(tx, nonce)
                return None if found is None else found.issued_at
            issued = tx.scalar(_NONCE_ISSUED, {"nonce": nonce})
        return None if issued is None else int(issued)

    def purge_nonces(self, expired_before: int) -> int:
        """Delete nonces that expired before ``expired_before``; returns how many.

        Pass a time well behind now: a purged nonce reads as UNKNOWN, no longer EXPIRED.
        """
        with self.write() as tx:
            return tx.execute(_PURGE_NONCES, {"before": expired_before})

    # -- TPM clocks --------------------------------------------------------------------

    def forget_clock(self, ak_name: bytes | str, *,
                     in_transaction: InTransaction | None = None) -> bool:
        """Re-admit an AK after a TPM reset a policy with ``deny_reset`` refuses.

        The next TPM reset then starts a new epoch; returns whether a clock was known.
        The epoch's clock range is kept: quotes made before the reset stay refused.
        ``in_transaction`` as for :meth:`enroll`.
        """
        name = _hex(ak_name, "AK name")
        with self.write() as tx:
            readmitted = epochs.readmit(tx, name)
            forgotten = tx.execute(_FORGET_CLOCK, {"ak": name}) > 0 or readmitted
            reportclock.forget(tx, ak_name=name)
            if in_transaction is not None:
                in_transaction(tx)
            return forgotten

    def record_reset(self, ak_name: bytes | str, clock: SeenClock, now: int) -> None:
        """Record a TPM reset a policy with ``deny_reset`` refused (from a verified quote):
        it becomes the AK's current epoch, pending re-admission (:meth:`forget_clock`)."""
        name = _hex(ak_name, "AK name")
        with self.write() as tx:
            epochs.record_reset(tx, name, clock, now)

    # -- artifacts ---------------------------------------------------------------------

    def snapshot(self, ak_name: bytes | str, *, jti: str, now: int, enrollment: bool = False,
                 host: str | None = None, kid: str | None = None, nonce: str | None = None,
                 seen: bool = False, parent: str | None = None,
                 approval: ApprovalUse | None = None,
                 log_base: tuple[str, int] | None = None) -> Snapshot:
        """Everything a verifier reads for one artifact, in one read transaction.

        Always the AK's last clock and every revocation of ``jti``, ``kid``, the AK and
        ``host``, most specific first (the snapshot holds the first); with
        ``enrollment``, the AK's (:meth:`enrollment`), whose host is looked up when
        ``host`` is None; the state of ``nonce`` at ``now``; with ``seen``, whether the
        jti was accepted before; and the ``parent`` with the nearest revocation of its
        line (its own, an ancestor's, or their key's, AK's or host's); always the AK's
        boot epoch, and when
        the nonce is usable, when it was issued. A ``kid`` that is not a key name
        (lowercase hex) matches no revocation; nor does an ``approval`` id that is not
        one. With ``approval``: its revocations, and the highest serial accepted for its
        authority and policyRef from the AK or its host id (:mod:`attest.store.approvals`).
        With ``log_base`` (a policy digest and a record count): the AK's appraised runtime
        log prefixes of that count under that policy (:mod:`attest.store.prefixes`).
        """
        with self.read() as tx:
            return self.snapshot_in(tx, ak_name, jti=jti, now=now, enrollment=enrollment,
                                    host=host, kid=kid, nonce=nonce, seen=seen,
                                    parent=parent, approval=approval, log_base=log_base)

    def snapshot_in(self, tx: Transaction, ak_name: bytes | str, *, jti: str, now: int,
                    enrollment: bool = False, host: str | None = None,
                    kid: str | None = None, nonce: str | None = None, seen: bool = False,
                    parent: str | None = None,
                    approval: ApprovalUse | None = None,
                    log_base: tuple[str, int] | None = None) -> Snapshot:
        """:meth:`snapshot` in the caller's transaction ``tx``: several artifacts' reads
        can share one."""
        name = _hex(ak_name, "AK name")
        if kid is not None and not (_KEY_NAME.fullmatch(kid) and len(kid) <= MAX_HEX_NAME):
            kid = None
        approval_id = None if approval is None else _approval_id(approval.id)
        enrolled = tx.first(_ENROLLMENT, {"ak": name}) if enrollment else None
        if host is None and enrolled is not None:
            host = enrolled.host
        last = _last_clock(tx, name)
        epoch = epochs.current_epoch(tx, name)
        state = issued_at = None
        if nonce is not None:
            state, issued_at = self.nonce_state_in(tx, nonce, now)
        jti_seen = seen and tx.first(_JTI_SEEN, {"jti": jti}) is not None
        above = None if parent is None else tx.first(_ARTIFACT, {"jti": parent})
        own: list[tuple[RevocationKind, str | None]] = [
            (RevocationKind.ARTIFACT, jti), (RevocationKind.KEY, kid),
            (RevocationKind.AK, name), (RevocationKind.HOST, host),
            (RevocationKind.APPROVAL, approval_id)]
        enrolled_as = [] if enrolled is None else [(RevocationKind.AK, name),
                                                    (RevocationKind.EK, enrolled.ek_id),
                                                    (RevocationKind.HOST, enrolled.host)]
        line = [] if parent is None or above is None else _line(parent, above)
        found = revs.matching(tx, own + enrolled_as + line)
        parent_revocation = (None if parent is None or above is None
                             else _ancestry(tx, parent, above, found))
        approval_serial = (None if approval is None
                           else approvals.highest(tx, name, approval, host))
        found_prefixes = (() if log_base is None
                          else prefixes.find(tx, name, log_base[0], log_base[1]))
        wanted = {(kind, subject) for kind, subject in own if subject is not None}
        return Snapshot(
            enrollment=None if enrolled is None else _enrollment_of(
                enrolled, revs.best(found, enrolled_as)),
            last_clock=last, nonce=state, jti_seen=jti_seen,
            revocations=tuple(rev for _, rev in found if (rev.kind, rev.subject) in wanted),
            parent=None if above is None else _artifact(above, parent_revocation),
            parent_revocation=parent_revocation, approval_serial=approval_serial,
            epoch=epoch, nonce_issued_at=issued_at, log_prefixes=found_prefixes)

    def accept(self, record: ArtifactRecord, *, nonce: str | None, single_use: bool,
               clock: SeenClock, now: int,
               in_transaction: Callable[[Transaction], None] | None = None,
               approval: ApprovalUse | None = None) -> None:
        """Record an acceptance, all or nothing, in one transaction.

        Consumes ``nonce`` (NonceRejected unless usable), refuses anything revoked
        meanwhile (Revoked: closes the window between the verifier's checks and this
        commit), inserts the jti (Replayed when single use and seen), advances the AK's
        clock and merges the quote into its boot epoch (ClockRejected when a later boot
        was recorded meanwhile: :mod:`attest.store.epochs`), then runs ``in_transaction``
        (the audit log's append goes there, so no acceptance commits unlogged). Whatever
        raises, nothing is written: a denied artifact consumes neither its jti nor its
        nonce. ``approval``: the authority approval the key signed under, refused when
        revoked meanwhile or older than one accepted meanwhile for the AK or its host
        (ApprovalRolledBack), else recorded as their mark.
        """
        with self.write() as tx:
            self.record_acceptance(tx, record, nonce=nonce, single_use=single_use,
                                   clock=clock, now=now, approval=approval)
            if in_transaction is not None:
                in_transaction(tx)

    def record_acceptance(self, tx: Transaction, record: ArtifactRecord, *,
                          nonce: str | None, single_use: bool, clock: SeenClock, now: int,
                          approval: ApprovalUse | None = None,
                          log_prefix: LogPrefix | None = None, log_whole: bool = False) -> None:
        """:meth:`accept`'s writes in the caller's write transaction ``tx``, for a caller
        that commits more with them (the audited verifier: its entry and seals). The same
        refusals, raised before the caller's own writes; its rollback undoes them all.
        ``log_prefix``: the accepted artifact's whole runtime log as appraised, with the
        caller's seal (:mod:`attest.store.prefixes`); ``log_whole``: the artifact sent
        all of it."""
        _check_record(record)
        if nonce is not None:
            if challenges.looks_minted(nonce):
                minted = self._challenge(tx, nonce)
                if minted is None:
                    raise NonceRejected(NonceState.UNKNOWN)
                acceptance.consume_challenge(tx, minted, now)
            else:
                acceptance.consume_nonce(tx, nonce, now)
        stored = acceptance.stored_artifact(tx, record.jti)
        # Its own key, AK and host, then its line (itself and, when stored already,
        # what its row rests on), then its parent's line: one lookup unless a stored
        # row or the parent has ancestors to walk.
        own: list[tuple[RevocationKind, str | None]] = [
            (RevocationKind.KEY, record.kid), (RevocationKind.AK, record.ak_name),
            (RevocationKind.HOST, record.host),
            (RevocationKind.APPROVAL,
             None if approval is None else _approval_id(approval.id))]
        parent: list[tuple[RevocationKind, str | None]] = (
            [] if record.parent_jti is None
            else [(RevocationKind.ARTIFACT, record.parent_jti)])
        found = revs.matching(tx, own + _line(record.jti, stored) + parent)
        revoked = (revs.best(found, own) or _ancestry(tx, record.jti, stored, found)
                   or (None if record.parent_jti is None
                       else revs.best(found, parent)
                       or revs.in_chain(tx, record.parent_jti)))
        if revoked is not None:
            raise Revoked(revoked)
        acceptance.insert_artifact(tx, record, single_use=single_use, now=now,
                                   stored_sha256=None if stored is None else stored.sha256)
        acceptance.advance_clock(tx, record.ak_name, clock, now)
        epochs.advance_epoch(tx, record.ak_name, clock, now)
        if approval is not None:
            approvals.advance(tx, record.ak_name, approval, now, record.host)
            approval_id = _approval_id(approval.id)
            if approval_id is not None:
                acceptance.record_approval(tx, record.jti, approval_id)
        if log_prefix is not None:
            prefixes.record(tx, log_prefix, now, whole=log_whole)

    def log_prefixes(self, ak_name: bytes | str, policy_digest: str,
                     count: int) -> tuple[LogPrefix, ...]:
        """The AK's runtime log prefixes of ``count`` records under the policy, any epoch
        (:mod:`attest.store.prefixes`)."""
        with self.read() as tx:
            return prefixes.find(tx, _hex(ak_name, "AK name"), policy_digest, count)

    def record_log_prefix(self, prefix: LogPrefix, now: int) -> None:
        """Record an appraised runtime log segment's prefix, with its seal (no artifact
        is accepted with it)."""
        with self.write() as tx:
            prefixes.record(tx, prefix, now)

    # -- revocation --------------------------------------------------------------------

    def revoke_artifact(self, jti: str, reason: str, now: int, *,
                        in_transaction: Callable[[Transaction, list[str]], None] | None = None
                        ) -> list[str]:
        """Revoke ``jti`` and every descendant the store holds; returns them, root first.

        A jti not (yet) accepted is recorded too, so that it is refused when presented.
        Revoking again keeps the first reason and time. ``in_transaction`` runs last in
        the same transaction with the jtis revoked (their audit entries go there).
        """
        _bounded(jti, "jti", MAX_JTI)
        _reason(reason)
        with self.write() as tx:
            revs.record(tx, RevocationKind.ARTIFACT, jti, reason, now)
            below = revs.descendants(tx, jti)
            for child in below:
                revs.record(tx, RevocationKind.ARTIFACT, child, reason, now, cascaded_from=jti)
            if in_transaction is not None:
                in_transaction(tx, [jti, *below])
        return [jti, *below]

    def revoke_key(self, kid_hex: str, reason: str, now: int, *,
                   in_transaction: InTransaction | None = None) -> None:
        self._revoke(RevocationKind.KEY, _hex(kid_hex, "key name"), reason, now, in_transaction)

    def revoke_ak(self, ak_name_hex: bytes | str, reason: str, now: int, *,
                  in_transaction: InTransaction | None = None) -> None:
        """Revoke an AK; its enrollment then reads as revoked (re-enrolling keeps it so)."""
        self._revoke(RevocationKind.AK, _hex(ak_name_hex, "AK name"), reason, now,
                     in_transaction)

    def revoke_host(self, host: str, reason: str, now: int, *,
                    in_transaction: RevocationHook | None = None,
                    ) -> list[tuple[RevocationKind, str]]:
        """Revoke a host and its TPM identity: the EKs it enrolled with and every AK of
        theirs, under any host id. No re-enrollment lifts it. Returns what was revoked;
        ``in_transaction`` gets the same list inside the transaction (the audit entries
        go there): if it raises, nothing is revoked."""
        _bounded(host, "host", MAX_HOST)
        return self._revoke_identity(identities.revoke_host, host, reason, now,
                                     in_transaction)

    def revoke_ek(self, ek: str, reason: str, now: int, *,
                  in_transaction: RevocationHook | None = None,
                  ) -> list[tuple[RevocationKind, str]]:
        """Revoke a TPM by its EK id and every AK activated under it, under any host id
        (a TPM moved off its host id, then lost). Returns what was revoked, the EK first;
        ``in_transaction`` as for :meth:`revoke_host`."""
        identities.ek_id(ek)
        return self._revoke_identity(identities.revoke_ek, ek, reason, now, in_transaction)

    def _revoke_identity(self, revoke: Callable[[Transaction, str, str, int],
                                                list[tuple[RevocationKind, str]]],
                         subject: str, reason: str, now: int,
                         in_transaction: RevocationHook | None,
                         ) -> list[tuple[RevocationKind, str]]:
        """Run a cascading revocation (a host's or an EK's TPM identity) and its hook in
        one transaction; returns what it revoked."""
        _reason(reason)
        with self.write() as tx:
            revoked = revoke(tx, subject, reason, now)
            if in_transaction is not None:
                in_transaction(tx, revoked)
            return revoked

    def revoke_approval(self, approval_id: str, reason: str, now: int, *,
                        in_transaction: InTransaction | None = None) -> None:
        """Revoke an authority's approval (by its id): artifacts signed under it are denied."""
        if _approval_id(approval_id) is None:
            raise UsageError(f"not an approval id: {approval_id[:80]!r}",
                             hint="64 lowercase hex digits, as `attest policy approve` prints")
        self._revoke(RevocationKind.APPROVAL, approval_id, reason, now, in_transaction)

    def _revoke(self, kind: RevocationKind, subject: str, reason: str, now: int,
                in_transaction: InTransaction | None) -> None:
        _reason(reason)
        with self.write() as tx:
            revs.record(tx, kind, subject, reason, now)
            if in_transaction is not None:
                in_transaction(tx)



# -- helpers ---------------------------------------------------------------------------


def _upsert(tx: Transaction, update: str, insert: str, values: dict[str, object]) -> None:
    """Run ``update``, else (no row matched) ``insert``, both with ``values``.

    Portable (no ON CONFLICT dialects); a concurrent insert of the same key loses in
    its savepoint and becomes an update on the next round.
    """
    for _ in range(2):
        if tx.execute(update, values) == 1:
            return
        try:
            with tx.savepoint():
                tx.execute(insert, values)
            return
        except Conflict:
            continue
    raise RuntimeError(f"could not upsert: {insert}")


def _enrollment(tx: Transaction, row: Row) -> Enrollment:
    wanted = [(RevocationKind.AK, row.ak_name), (RevocationKind.HOST, row.host)]
    if row.ek_id is not None:
        wanted.insert(1, (RevocationKind.EK, row.ek_id))
    return _enrollment_of(row, revs.find(tx, wanted))


def _enrollment_of(row: Row, revoked: Revocation | None) -> Enrollment:
    """An enrollments row (attributes by column name) as the store hands it out."""
    return Enrollment(
        host=row.host, ak_name=bytes.fromhex(row.ak_name), ak_public=row.ak_public,
        ak_qualified_name=row.ak_qualified_name, ek_certificate=row.ek_certificate,
        enrolled_at=row.enrolled_at, updated_at=row.updated_at,
        revoked=revoked is not None,
        revocation_reason=None if revoked is None else revoked.reason, ek=row.ek_id,
        seal=None if row.seal is None else bytes(row.seal))


def _last_clock(tx: Transaction, ak_name: str) -> SeenClock | None:
    row = tx.first(_CLOCK, {"ak": ak_name})
    if row is None:
        return None
    return SeenClock(clock=row.clock, reset_count=row.reset_count,
                     restart_count=row.restart_count)


def _artifact(row: Row, revoked: Revocation | None) -> ArtifactRecord:
    """An artifacts row (attributes by column name) as the store hands it out."""
    return ArtifactRecord(
        jti=row.jti, sha256=row.sha256, parent_jti=row.parent_jti, depth=row.depth,
        exp=row.exp, host=row.host, kid=row.kid, ak_name=row.ak_name,
        subject=row.subject, scope=row.scope, accepted_at=row.accepted_at,
        revoked=revoked is not None,
        revocation_reason=None if revoked is None else revoked.reason,
        approval=row.approval, seal=None if row.seal is None else bytes(row.seal))


def _line(jti: str, stored: Row | None) -> list[tuple[RevocationKind, str | None]]:
    """The revocations that cover ``jti`` given its stored row (or None), as far as they
    are known without walking its ancestors: see :func:`_ancestry`."""
    if stored is None or stored.parent_jti is not None:
        return [(RevocationKind.ARTIFACT, jti)]
    return [(RevocationKind.ARTIFACT, jti), (RevocationKind.KEY, stored.kid),
            (RevocationKind.AK, stored.ak_name), (RevocationKind.HOST, stored.host),
            (RevocationKind.APPROVAL, stored.approval)]


def _ancestry(tx: Transaction, jti: str, stored: Row | None,
              found: list[revs.Ranked] | None = None) -> Revocation | None:
    """``revs.in_ancestry(tx, jti)``, knowing the row stored under ``jti`` (or None) and,
    optionally, the revocations matching :func:`_line`'s pairs (``revs.matching``).

    A jti the store has not seen is covered by its own revocation only, and one without
    a parent by its own or its key's, AK's or host's (the walk's first level, in the
    walk's order): only an artifact with a parent needs the recursive walk.
    """
    line = _line(jti, stored)
    if found is None:
        found = revs.matching(tx, line)
    direct = revs.best(found, line[:1])
    if direct is not None or stored is None:
        return direct
    if stored.parent_jti is None:
        return revs.best(found, line)
    return revs.in_chain(tx, jti)


def _approval_id(value: str | None) -> str | None:
    """An approval id as the store keys it, or None (matches nothing) for any other text."""
    return value if isinstance(value, str) and _APPROVAL_ID.fullmatch(value) else None


def _hex(value: bytes | str, what: str) -> str:
    """A TPM name as the store keys it: lowercase hex."""
    text = value.hex() if isinstance(value, bytes) else value.strip().lower()
    if not _HEX.match(text) or len(text) % 2:
        raise UsageError(f"{what} is not hex: {text[:80]!r}")
    return _bounded(text, what, MAX_HEX_NAME)


def _host_id(host: str) -> str:
    """A host id a new enrollment may take: visible characters only, none at either end
    a space. The default is the hostname, which the host's root sets to any bytes: an
    id that differs from another by an invisible character would read as that host in
    every listing, log and terminal."""
    _bounded(host, "host", MAX_HOST)
    if not host.isprintable() or host != host.strip():
        raise UsageError(f"host id {host!r} has invisible or control characters, or spaces "
                         "at an end", hint="pass a plain host id with --host")
    return host


def _bounded(value: str, what: str, limit: int) -> str:
    if not value:
        raise UsageError(f"{what} is empty")
    if len(value) > limit:
        raise UsageError(f"{what} is {len(value)} characters; at most {limit} are stored")
    return value


def _reason(reason: str) -> None:
    if not reason.strip():
        raise UsageError("a revocation needs a reason")


def _check_record(record: ArtifactRecord) -> None:
    _bounded(record.jti, "jti", MAX_JTI)
    if record.parent_jti is not None:
        _bounded(record.parent_jti, "parent jti", MAX_JTI)
    _bounded(record.host, "host", MAX_HOST)
    if _hex(record.kid, "kid") != record.kid or _hex(record.ak_name, "AK name") != record.ak_name:
        raise UsageError("kid and AK name must be lowercase hex")
    if not _SHA256.match(record.sha256):
        raise UsageError("the artifact digest must be SHA-256, lowercase hex")
    if record.depth < 0:
        raise UsageError(f"lineage depth {record.depth} is negative")
