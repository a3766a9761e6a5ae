"""Replica heartbeats (attest.server.replicas) and ``GET /readyz``: each serving process
keeps its row current, an operator sees a stale one (`attest replicas`), a replica that
loses PostgreSQL answers 503 and is ready again by itself once the server is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from attest.cli.main import cli
from attest.policy import load_policy
from attest.server.app import create_app
from attest.store import Store
from attest.store import replicas as rows
from attest.store.replicas import Replica
from tests import pg

POLICY = Path(__file__).resolve().parents[1] / "corpus" / "policy-pcr.yaml"


def _client(url: str, home: Path) -> TestClient:
    return TestClient(create_app(load_policy(POLICY), url, home))


def _wait_for(condition: object, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"still not {what} after {limit} s")
        time.sleep(0.05)


@pytest.fixture
def fast_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTEST_SERVE_HEARTBEAT", "0.2")


def test_a_replica_registers_beats_and_leaves_cleanly(pg_url: str, tmp_path: Path,
                                                      fast_beats: None) -> None:
    with _client(pg_url, tmp_path) as client, Store.open(pg_url) as store:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        me = ready.json()["replica"]
        _wait_for(lambda: [r.replica for r in rows.listed(store)] == [me], "registered")
        first = rows.listed(store)[0].last_seen
        _wait_for(lambda: rows.listed(store)[0].last_seen > first, "beating")
        [shown] = client.get("/readyz").json()["replicas"]
        assert shown["id"] == me and shown["stale"] is False
    with Store.open(pg_url) as store:
        assert rows.listed(store) == []  # a clean stop removes its row


def test_a_dead_replica_shows_stale_to_the_operator(pg_url: str, tmp_path: Path) -> None:
    now = int(time.time())
    dead = Replica("deadbeefdeadbeef", "web-\x1b[31m-2", 4242, now - 600, now - 300, "0.1.0")
    with Store.open(pg_url) as store:
        rows.register(store, dead)
    with _client(pg_url, tmp_path) as client:
        listed = {r["id"]: r for r in client.get("/readyz").json()["replicas"]}
        assert listed["deadbeefdeadbeef"]["stale"] is True
        assert [r["stale"] for i, r in listed.items() if i != "deadbeefdeadbeef"] == [False]
        shown = CliRunner().invoke(cli, ["--home", str(tmp_path), "replicas", "--store",
                                         pg_url])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith("deadbeefdeadbeef"))
    assert "STALE" in line and "pid 4242" in line
    assert "\x1b" not in shown.output  # a host name from the database, escaped


def test_attest_replicas_on_a_store_out_of_reach_is_exit_3(tmp_path: Path) -> None:
    shown = CliRunner().invoke(cli, ["--home", str(tmp_path), "replicas", "--store",
                                     "postgresql://attest@127.0.0.1:1/attest"])
    assert shown.exit_code == 3, shown.output


@pytest.fixture
def own_server() -> Iterator[pg.PostgresServer]:
    with pg.started() as server:
        yield server


def test_a_replica_that_loses_the_database_is_not_ready_until_it_is_back(
        own_server: pg.PostgresServer, tmp_path: Path, fast_beats: None) -> None:
    with own_server.database() as url, _client(url, tmp_path) as client:
        assert client.get("/readyz").status_code == 200
        own_server.stop("immediate")
        for path in ("/readyz", "/v1/challenges"):
            answer = client.get(path) if path == "/readyz" else client.post(path, json={})
            assert answer.status_code == 503, answer.text
            assert "error" in answer.json()
        own_server.start()
        # The pool's liveness check replaces the dead connections: no restart of the replica.
        _wait_for(lambda: client.get("/readyz").status_code == 200, "ready again")
        assert client.post("/v1/challenges", json={}).status_code == 200


def test_each_worker_of_attest_serve_is_a_replica(pg_url: str, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "ATTEST_HOME": str(tmp_path), "ATTEST_SERVE_HEARTBEAT": "0.3",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    errors = tmp_path / "serve.err"
    with errors.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "attest.cli.main", "serve", "--policy", str(POLICY),
             "--store", pg_url, "--port", "0", "--workers", "2"], env=env, stderr=sink)
    try:
        with Store.open(pg_url) as store:
            def two_workers() -> bool:
                assert server.poll() is None, errors.read_text()
                return len({r.pid for r in rows.listed(store)} - {server.pid}) == 2
            _wait_for(two_workers, "two workers beating", limit=60)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert "Traceback" not in errors.read_text(), errors.read_text()
    with Store.open(pg_url) as store:
        assert rows.listed(store) == []  # each worker removed its own row on the way out
