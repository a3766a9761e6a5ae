"""Replica heartbeats (attest.server.replicas): each serving process keeps its row
current and removes it on a clean stop, an operator sees a stale one (`attest replicas`),
a replica that loses PostgreSQL answers 503 and serves again by itself once the server
is back."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _readiness(client: TestClient) -> Any:
    """GET /readyz where the operations routes serve it, else a challenge (which writes
    its nonce where challenges are rows): 200 when the database answers, else 503."""
    answer = client.get("/readyz")
    return client.post("/v1/challenges", json={}) if answer.status_code == 404 else answer


@pytest.fixture
def fast_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTEST_SERVE_HEARTBEAT", "200ms")


def test_a_replica_registers_beats_and_leaves_cleanly(pg_url: str, tmp_path: Path,
                                                      fast_beats: None) -> None:
    with _client(pg_url, tmp_path) as client, Store.open(pg_url) as store:
        me = client.app.state.heartbeat.replica.replica  # type: ignore[attr-defined]
        _wait_for(lambda: [r.replica for r in rows.listed(store)] == [me], "registered")
        first = rows.listed(store)[0].last_seen
        _wait_for(lambda: rows.listed(store)[0].last_seen > first, "beating")
        [shown] = rows.listed(store)
        assert (shown.host, shown.pid) == (socket.gethostname(), os.getpid())
        assert not shown.stale(int(time.time()), 2)
    with Store.open(pg_url) as store:
        assert rows.listed(store) == []  # a clean stop removes its row


def test_a_dead_replica_shows_stale_to_the_operator(pg_url: str, tmp_path: Path) -> None:
    now = int(time.time())
    dead = Replica("deadbeefdeadbeef", "web-\x1b[31m-2", 4242, now - 600, now - 300, "0.1.0")
    with Store.open(pg_url) as store:
        rows.register(store, dead)
    with _client(pg_url, tmp_path) as client:
        me = client.app.state.heartbeat.replica.replica  # type: ignore[attr-defined]
        with Store.open(pg_url) as store:
            _wait_for(lambda: me in {r.replica for r in rows.listed(store)}, "registered")
        shown = CliRunner().invoke(cli, ["--home", str(tmp_path), "replicas", "--store",
                                         pg_url])
        as_json = CliRunner().invoke(cli, ["--home", str(tmp_path), "replicas", "--store",
                                           pg_url, "--json"])
    assert shown.exit_code == 0, shown.output
    lines = {x.split()[0]: x for x in shown.output.splitlines()}
    assert "STALE" in lines["deadbeefdeadbeef"] and "pid 4242" in lines["deadbeefdeadbeef"]
    assert " live " in lines[me]
    assert "\x1b" not in shown.output  # a host name from the database, escaped
    listed = {r["id"]: r["stale"] for r in json.loads(as_json.output)["replicas"]}
    assert listed == {"deadbeefdeadbeef": True, me: False}


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
        assert _readiness(client).status_code == 200
        own_server.stop("immediate")
        answer = _readiness(client)
        assert answer.status_code == 503, answer.text
        assert "error" in answer.json()
        own_server.start()
        # The pool's liveness check replaces the dead connections: no restart of the replica.
        _wait_for(lambda: _readiness(client).status_code == 200, "serving again")
        me = client.app.state.heartbeat.replica.replica  # type: ignore[attr-defined]
        with Store.open(url) as store:  # and its heartbeat resumes
            _wait_for(lambda: any(r.replica == me and not r.stale(int(time.time()), 2)
                                  for r in rows.listed(store)), "beating again")


def test_each_worker_of_attest_serve_is_a_replica(pg_url: str, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    env = {**os.environ, "ATTEST_HOME": str(tmp_path), "ATTEST_SERVE_HEARTBEAT": "300ms",
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
