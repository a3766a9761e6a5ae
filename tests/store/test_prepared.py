"""Prepared statements: the SQL SQLAlchemy would send, run on the DBAPI cursor directly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import bindparam, insert, literal_column, select, table
from sqlalchemy.exc import DBAPIError, IntegrityError

from attest.store import Store
from attest.store.prepared import Prepared
from attest.store.schema import ak_clocks, revocations
from tests.store.helpers import AK, HOST, KID, T0, clock, record

_BY_KIND = select(revocations).where(revocations.c.kind == bindparam("kind")) \
    .order_by(revocations.c.id)


def test_rows_are_what_sqlalchemy_reads(store: Store) -> None:
    store.revoke_key(KID, "key", T0)
    store.revoke_host(HOST, "host", T0 + 1)
    store.revoke_host("host-2", "host 2", T0 + 2)
    prepared = Prepared(_BY_KIND)
    with store.read() as conn:
        for kind in ("key", "host", "jti"):
            expected = [tuple(row) for row in conn.execute(_BY_KIND, {"kind": kind}).all()]
            assert [tuple(row) for row in prepared.all(conn, {"kind": kind})] == expected
        first = prepared.first(conn, {"kind": "host"})
        assert (first.subject, first.reason, first.revoked_at) == (HOST, "host", T0 + 1)
        assert prepared.first(conn, {"kind": "ak"}) is None


def test_row_counts_and_inserts(store: Store) -> None:
    store.accept(record("j1"), nonce=None, single_use=True, clock=clock(5), now=T0)
    touch = Prepared(ak_clocks.update().where(ak_clocks.c.ak_name == bindparam("ak"))
                     .values(seen_at=bindparam("at")))
    add = Prepared(insert(ak_clocks), tuple(ak_clocks.c.keys()))
    with store.write() as conn:
        assert touch.rowcount(conn, {"ak": AK, "at": T0 + 9}) == 1
        assert touch.rowcount(conn, {"ak": "00", "at": T0 + 9}) == 0
        assert add.rowcount(conn, {"ak_name": "00", "clock": 1, "reset_count": 2,
                                   "restart_count": 3, "seen_at": T0}) == 1
    assert store.last_clock("00") == clock(1, reset=2, restart=3)


def test_a_missing_parameter_is_refused_before_the_database(store: Store) -> None:
    with store.read() as conn, pytest.raises(ValueError, match="kind"):
        Prepared(_BY_KIND).all(conn, {})


def _failure(run: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as caught:  # compared by the caller
        run()
    return caught.value


def _database_error(exc: BaseException) -> BaseException:
    """The DBAPI's own error under SQLAlchemy's wrapper (and the store's, if any)."""
    wrapped = exc if isinstance(exc, DBAPIError) else exc.__cause__
    assert isinstance(wrapped, DBAPIError)
    return wrapped.orig


def test_database_errors_come_out_as_sqlalchemy_wraps_them(store: Store) -> None:
    query = select(literal_column("1")).select_from(table("nowhere"))

    def through_sqlalchemy() -> None:
        with store.engine.connect() as conn:
            conn.execute(query).first()

    def prepared() -> None:
        with store.engine.connect() as conn:
            Prepared(query).first(conn, {})

    expected, got = _failure(through_sqlalchemy), _failure(prepared)
    assert type(got) is type(expected)
    assert isinstance(got, DBAPIError)
    assert type(got.orig) is type(_database_error(expected))
    add = Prepared(insert(revocations), ("kind", "subject", "reason", "revoked_at",
                                         "cascaded_from"))
    values = {"kind": "key", "subject": KID, "reason": "r", "revoked_at": T0,
              "cascaded_from": None}
    with store.write() as conn:
        add.rowcount(conn, values)
    with store.write() as conn, pytest.raises(IntegrityError):
        add.rowcount(conn, values)


def test_a_broken_store_fails_as_it_did_through_sqlalchemy(store: Store) -> None:
    # StoreUnavailable on SQLite ("no such table"); what the store raised before its
    # statements were prepared, whatever the backend.
    with store.write() as conn:
        conn.exec_driver_sql("DROP TABLE ak_clocks")

    def through_sqlalchemy() -> None:
        with store.read() as conn:
            conn.execute(select(ak_clocks)).first()

    expected = _failure(through_sqlalchemy)
    for run in (lambda: store.snapshot(AK, jti="j1", now=T0, host=HOST),
                lambda: store.accept(record("j1"), nonce=None, single_use=True,
                                     clock=clock(5), now=T0)):
        got = _failure(run)
        assert type(got) is type(expected)
        assert str(_database_error(got)).splitlines()[0] == \
            str(_database_error(expected)).splitlines()[0]
    assert not store.jti_seen("j1")
