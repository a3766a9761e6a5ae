"""Store URLs for a database server: ``postgresql://`` (and libpq's ``postgres://``) reach
PostgreSQL through psycopg, and no message ever carries the URL's password."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli.main import cli
from attest.errors import EXIT_ENVIRONMENT, AttestError, StoreUnavailable
from attest.store import Store
from attest.store.db import redacted
from tests.pg import USER, PostgresServer

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SECRET = "hunter2-Z9"  # noqa: S105 - the password no message may show


def _message(error: AttestError) -> str:
    return f"{error.message} {error.hint or ''}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_each_postgresql_scheme_reaches_the_server(postgres: PostgresServer, pg_url: str,
                                                   scheme: str) -> None:
    url = pg_url.replace("postgresql+psycopg://", f"{scheme}://", 1)
    with Store.open(url) as store, store.read() as tx:
        assert tx.dialect == "postgresql"
        assert tx.scalar("SELECT current_user") == USER


@pytest.mark.parametrize("url", [
    f"postgresql://attest:{SECRET}@127.0.0.1:1/attest",  # nothing listens
    f"postgres://attest:{SECRET}@127.0.0.1:1/attest",
    f"postgresql://attest@127.0.0.1:1/attest?password={SECRET}",
    f"postgresql+pg8000://attest:{SECRET}@127.0.0.1:1/attest",  # a driver the store refuses
    f"mysql://attest:{SECRET}@127.0.0.1:1/attest",
    f"postgresql://attest:{SECRET}@[::1/attest",  # not a URL at all
])
def test_a_store_that_fails_never_shows_its_password(url: str) -> None:
    with pytest.raises(AttestError) as caught:
        Store.open(url)
    assert SECRET not in _message(caught.value)


def test_a_server_refusal_never_shows_the_password(postgres: PostgresServer) -> None:
    # The server answers (trust authentication ignores the password): no such database.
    url = f"postgresql://{USER}:{SECRET}@/no_such_db?host={postgres.socket_dir}"
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(url)
    assert "no_such_db" in caught.value.message
    assert SECRET not in _message(caught.value)


def test_attest_serve_on_a_store_out_of_reach_is_exit_3_without_the_password(
        tmp_path: Path) -> None:
    policy = CORPUS / "policy-pcr.yaml"
    result = CliRunner().invoke(cli, [
        "--home", str(tmp_path / "home"), "serve", "--policy", str(policy), "--port", "0",
        "--store", f"postgresql://attest:{SECRET}@127.0.0.1:1/attest"])
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    assert "127.0.0.1:1" in result.output  # it says which store
    assert SECRET not in result.output


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db?sslmode=require&password=pw", "postgresql://u@h/db?sslmode=require&password=***"),
    ("postgresql://:pw@/db?host=/run/pg", "postgresql://:***@/db?host=/run/pg"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////var/lib/attest/verifier.db", "sqlite:////var/lib/attest/verifier.db"),
])
def test_redacted_hides_passwords_only(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_pool_with_no_connection_free_is_the_store_unavailable(pg_url: str) -> None:
    from sqlalchemy import create_engine

    from attest.store.server import ServerDatabase

    # One connection, no overflow: a second transaction waits pool_timeout, then fails as
    # the environment (a 503 for a challenge), never as a surprise (a 500).
    database = ServerDatabase(create_engine(pg_url, pool_size=1, max_overflow=0,
                                            pool_timeout=0.2))
    try:
        with database.read() as held:
            held.scalar("SELECT 1")
            with pytest.raises(StoreUnavailable, match="no connection free"), database.read():
                pass
    finally:
        database.close()


def test_connecting_gives_up_after_a_bound_unless_the_url_says(pg_url: str) -> None:
    from attest.store.server import CONNECT_TIMEOUT_S, open_server

    for url, wanted in [(pg_url, str(CONNECT_TIMEOUT_S)), (f"{pg_url}&connect_timeout=3", "3")]:
        database = open_server(url)
        try:
            with database.read() as tx:
                assert tx.scalar("SELECT 1") == 1
            assert f"connect_timeout={wanted}" in database.where
        finally:
            database.close()
