"""Schema migrations (attest.store.migrations): a database made by the first release is
brought to the current version on open, on SQLite and on PostgreSQL, its rows kept; a
version without a way forward is refused; replicas starting together migrate it once."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from attest.audit import AuditLog, verify_log
from attest.errors import StoreUnavailable
from attest.store import NonceState, Store, default_url
from attest.store.db import Transaction, open_database
from attest.store.ddl import Column, Table, varchar
from attest.store.schema import STORE_SCHEMA_VERSION, TABLES
from tests.audit.conftest import entry
from tests.pg import PostgresServer
from tests.store import reads
from tests.store.helpers import T0, clock, raw_artifact, record
from tests.store.test_schema import _reference

NONCE = "ab" * 16
V1_ROWS = [  # what a version 1 verifier left behind: its versions, log state, a decision
    ("INSERT INTO schema_versions VALUES ('store', 1)", {}),
    ("INSERT INTO schema_versions VALUES ('audit', 1)", {}),
    ("INSERT INTO audit_state VALUES (1, 0, 0, 0)", {}),
    ("INSERT INTO nonces VALUES (%(nonce)s, %(issued)s, %(expires)s, NULL)",
     {"nonce": NONCE, "issued": T0, "expires": T0 + 600}),
]


@contextmanager
def _version_1(dialect: str, tmp_path: Path, postgres: Any) -> Iterator[str]:
    """A database as attest's first release made it (tests/store/schema_v1.*.sql)."""
    rows = [*V1_ROWS, (_artifact_insert(), raw_artifact("jti-0", None))]
    if dialect == "sqlite":
        path = tmp_path / "verifier.db"
        with closing(sqlite3.connect(path)) as db, db:
            for statement in _reference("sqlite"):
                db.execute(statement)
            for sql, params in rows:
                db.execute(sql.replace("%(", ":").replace(")s", ""), params)
        yield default_url(tmp_path)
        return
    server: PostgresServer = postgres
    with server.database() as url:
        with server.connect(url) as conn:
            for statement in _reference("postgresql"):
                conn.execute(statement)
            for sql, params in rows:
                conn.execute(sql, params)
        yield url


def _artifact_insert() -> str:
    names = list(raw_artifact("x", None))
    return (f"INSERT INTO artifacts ({', '.join(names)}) "  # noqa: S608 - test's own names
            f"VALUES ({', '.join(f'%({n})s' for n in names)})")


def _versions(store: Store) -> dict[str, int]:
    with store.read() as tx:
        return {r.component: r.version for r in tx.all(
            "SELECT component, version FROM schema_versions")}


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(dialect: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("postgres") if dialect == "postgresql" else None


def test_a_version_1_database_is_migrated_to_the_current_version(
        dialect: str, server: Any, tmp_path: Path) -> None:
    assert STORE_SCHEMA_VERSION > 1  # else there is nothing to migrate
    with _version_1(dialect, tmp_path, server) as url:
        with Store.open(url) as store:
            assert _versions(store) == {"store": STORE_SCHEMA_VERSION, "audit": 1}
            with store.read() as tx:
                for table in TABLES:  # every table of the current version is usable
                    tx.scalar(f"SELECT count(*) FROM {table.name}")  # noqa: S608
            # The rows of version 1 are kept and mean what they meant.
            assert reads.jti_seen(store, "jti-0")
            assert reads.nonce_state(store, NONCE, T0).value == NonceState.USABLE.value
            log = AuditLog.open(store, tmp_path / "home")
            store.accept(record("jti-1"), nonce=NONCE, single_use=True, clock=clock(5),
                         now=T0)
            log.record_many([entry(0), entry(1)])  # jti-0's and jti-1's decisions
            assert verify_log(store, log.verifier_key).entries == 2
        with Store.open(url) as again:  # a second open finds it current: nothing to do
            assert _versions(again)["store"] == STORE_SCHEMA_VERSION
            assert reads.jti_seen(again, "jti-1")


def test_a_version_without_a_migration_is_refused(dialect: str, server: Any,
                                                  tmp_path: Path) -> None:
    with _version_1(dialect, tmp_path, server) as url:
        with Store.open(url) as store, store.write() as tx:
            tx.execute("UPDATE schema_versions SET version = 0 WHERE component = 'store'")
        with pytest.raises(StoreUnavailable, match="no migration from version 0"):
            Store.open(url)
        database = open_database(url)
        try:
            with database.read() as tx:  # refused, and left as it was
                assert tx.scalar("SELECT version FROM schema_versions "
                                 "WHERE component = 'store'") == 0
        finally:
            database.close()


# -- replicas starting together ------------------------------------------------------------
OPENERS = 4


def open_at_once(url: str, home: str, barrier: Any, results: Any) -> None:
    """Worker process: open the store and the log when every other worker does."""
    barrier.wait()
    try:
        with Store.open(url) as store:
            AuditLog.open(store, Path(home))
            results.put(("ok", _versions(store)["store"]))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(("error", repr(exc)))


def _together(target: Any, *args: Any) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in OPENERS processes at once; their results."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(OPENERS, timeout=60)  # a dead worker fails, not hangs
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results))
             for _ in range(OPENERS)]
    for proc in procs:
        proc.start()
    try:
        return [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)


def test_replicas_starting_together_on_a_version_1_database(postgres: PostgresServer,
                                                            tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Store.open(default_url(tmp_path)) as keyed:  # the log key, made before the race
        AuditLog.open(keyed, home)
    with _version_1("postgresql", tmp_path, postgres) as url:
        outcomes = _together(open_at_once, url, str(home))
        assert outcomes == [("ok", STORE_SCHEMA_VERSION)] * OPENERS
        with Store.open(url) as store:
            assert _versions(store) == {"store": STORE_SCHEMA_VERSION, "audit": 1}
            assert reads.jti_seen(store, "jti-0")


# A component of the test's own whose step from version 1 to 2 leaves a row per run: a
# migration that ran twice (two replicas each finding version 1) leaves two.
PROBE = Table("migration_probe", (Column("migration_run", varchar(64), primary_key=True),))


def _probe_step(tx: Transaction) -> None:
    tx.scalar("SELECT pg_sleep(0.3)")  # long enough for every opener to be past its read
    tx.execute("INSERT INTO migration_probe VALUES (:run)", {"run": uuid.uuid4().hex})


def migrate_probe_at_once(url: str, barrier: Any, results: Any) -> None:
    """Worker process: bring the probe component to version 2 when the others do."""
    with Store.open(url) as store:
        barrier.wait()
        try:
            store.ensure_schema("probe", 2, [PROBE], {1: _probe_step})
            results.put("ok")
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            results.put(repr(exc))


def test_replicas_starting_together_run_each_migration_once(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        store.ensure_schema("probe", 1, [PROBE])
    assert _together(migrate_probe_at_once, pg_url) == ["ok"] * OPENERS
    with Store.open(pg_url) as store, store.read() as tx:
        assert tx.scalar("SELECT count(*) FROM migration_probe") == 1
        assert tx.scalar("SELECT version FROM schema_versions WHERE component = 'probe'") == 2


def test_a_version_3_database_made_before_the_console_gains_its_tables(
        dialect: str, server: Any, tmp_path: Path) -> None:
    """A deployment already at version 3 when the console came (host_reports, and the
    audit page's audit_verifications, a component of its own) opens with both: nothing to
    migrate, the tables created, its rows kept."""
    from attest.audit import verifications
    from attest.store import hostreports

    url = default_url(tmp_path) if dialect == "sqlite" else None
    with (_fresh(server) if url is None else _nothing(url)) as url:
        with Store.open(url) as store:
            store.accept(record("jti-1"), nonce=None, single_use=False, clock=clock(5), now=T0)
            with store.write() as tx:
                tx.execute("DROP TABLE host_reports")
        with Store.open(url) as store:
            assert _versions(store)["store"] == STORE_SCHEMA_VERSION
            assert hostreports.last(store, "web-1") is None  # the table is there, empty
            assert reads.jti_seen(store, "jti-1")
            verifications.ensure(store)  # what the audit page does as the service starts
            assert verifications.last(store) is None
            verifications.record(store, verifications.Verification(T0, True, 1, 1))
            assert verifications.last(store) == verifications.Verification(T0, True, 1, 1)


@contextmanager
def _nothing(url: str) -> Iterator[str]:
    yield url


@contextmanager
def _fresh(server: PostgresServer) -> Iterator[str]:
    with server.database() as url:
        yield url
