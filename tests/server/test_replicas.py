"""Three `attest serve` replicas (real uvicorn processes on loopback ports) on one real
PostgreSQL, artifacts from a host on its own swtpm:

- the same artifact with the same nonce, sent 50 times at once across the replicas, is
  accepted exactly once;
- a replica killed with SIGKILL mid-load leaves no audit index missing or doubled, shows
  stale in the heartbeats, and `attest audit verify` passes afterwards;
- PostgreSQL stopped mid-load (pg_ctl stop -m immediate): every answer is a denial or a
  503, no acceptance without its audit entry; once it is back the replicas serve again by
  themselves (the pool's liveness check), with no restart.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from attest.audit import AuditLog
from attest.policy import NonceMode
from attest.store import Store
from attest.store import replicas as replica_rows
from tests import pg
from tests.server.serving import SERVING, audit_verifies
from tests.verify.rig import Rig

REPLICAS = 3
DOWN = "down"  # the replica's process is gone: no answer at all


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    errors: Path  # its stderr

    def post(self, path: str, body: dict[str, Any]) -> tuple[int | str, Any]:
        """(status, JSON body), or (DOWN, None) when nothing answers."""
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.base}{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())
        except (OSError, http.client.HTTPException):  # refused, reset, cut off mid-answer
            return DOWN, None

    def ready(self) -> int | str:
        """200 when the replica reaches the database now, 503 when it does not: what
        GET /readyz answers where the operations routes serve it, else a challenge (which
        writes its nonce where challenges are rows)."""
        try:
            with urllib.request.urlopen(f"{self.base}/readyz", timeout=10) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            if refused.code != 404:
                return refused.code
        except (OSError, http.client.HTTPException):
            return DOWN
        return self.post("/v1/challenges", {})[0]


def _wait_for(condition: Any, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not {what} after {limit} s")
        time.sleep(0.1)


@contextmanager
def _replicas(policy: Path, home: Path, url: str) -> Iterator[list[Served]]:
    """REPLICAS processes of `attest serve` on ``url``, sharing the log key in ``home``."""
    env = {**os.environ, "ATTEST_HOME": str(home), "ATTEST_SERVE_HEARTBEAT": "500ms",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    served: list[Served] = []
    try:
        for n in range(REPLICAS):
            errors = home.parent / f"replica-{n}.err"
            with errors.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "attest.cli.main", "serve", "--policy", str(policy),
                     "--store", url, "--port", "0"], env=env, stderr=sink)
            served.append(Served(process, "", errors))
        for replica in served:
            def listening(replica: Served = replica) -> bool:
                assert replica.process.poll() is None, replica.errors.read_text()
                return SERVING.search(replica.errors.read_text()) is not None
            _wait_for(listening, "listening")
            found = SERVING.search(replica.errors.read_text())
            assert found is not None
            replica.base = f"http://127.0.0.1:{found.group(2)}"
        yield served
    finally:
        for replica in served:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in served:
            replica.process.wait(timeout=30)
    for replica in served:
        if replica.process.returncode != -signal.SIGKILL:
            assert "Traceback" not in replica.errors.read_text(), replica.errors.read_text()


def _keyed_home(rig: Rig, url: str) -> Path:
    """The verifier home the replicas share, its log key made before they start (one key
    signs every replica's heads: an operator copies the key folder to each machine)."""
    home = rig.tmp / "verifier"
    home.mkdir()
    with Store.open(url) as store:
        AuditLog.open(store, home)
    return home


def _policy(rig: Rig) -> Path:
    rig.policy(nonce=NonceMode.REQUIRED)
    return max(rig.tmp.glob("policy-*.yaml"))


def _logged(url: str) -> list[dict[str, Any]]:
    """Every audit entry, in order: their indexes are 0..n-1, each once."""
    with Store.open(url) as store:
        entries = [json.loads(e.data) for e in AuditLog.open(store, None).entries()]
    assert [e["index"] for e in entries] == list(range(len(entries)))
    return entries


def _issued(rig: Rig, served: list[Served], count: int) -> list[str]:
    """``count`` artifacts, each answering a challenge from the next replica in turn."""
    artifacts = []
    for n in range(count):
        _, challenge = served[n % REPLICAS].post("/v1/challenges", {})
        artifacts.append(rig.issue(nonce=challenge["nonce"]).decode())
    return artifacts


def _accepted_and_logged(answers: list[tuple[int | str, Any]], url: str) -> list[Any]:
    """The acceptances among ``answers``; each has its own audit entry, an acceptance of
    that jti."""
    entries = _logged(url)
    accepted = [body for status, body in answers if status == 200 and body["accepted"]]
    indexes = [body["audit_index"] for body in accepted]
    assert len(set(indexes)) == len(indexes)
    for body in accepted:
        entry = entries[body["audit_index"]]
        assert (entry["decision"], entry["jti"]) == ("accepted", body["jti"]), entry
    return accepted


def test_the_same_artifact_and_nonce_across_replicas_is_accepted_once(
        rig: Rig, pg_url: str) -> None:
    policy, home = _policy(rig), _keyed_home(rig, pg_url)
    with _replicas(policy, home, pg_url) as served:
        status, challenge = served[1].post("/v1/challenges", {})
        assert status == 200, challenge
        artifact = rig.issue(nonce=challenge["nonce"]).decode()
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(
                lambda n: served[n % REPLICAS].post("/v1/verify", {"artifact": artifact}),
                range(50)))
        assert Counter(status for status, _ in answers) == {200: 50}
        accepted = _accepted_and_logged(answers, pg_url)
        assert len(accepted) == 1
        for _, body in answers:
            if not body["accepted"]:
                assert {"nonce_reused", "replayed"} & set(body["reasons"]), body
        assert len(_logged(pg_url)) == 50  # every decision logged, at its own index
    audit_verifies(home, pg_url)


def test_a_replica_killed_mid_load_leaves_the_log_whole(rig: Rig, pg_url: str) -> None:
    policy, home = _policy(rig), _keyed_home(rig, pg_url)
    with _replicas(policy, home, pg_url) as served:
        artifacts = _issued(rig, served, 8)
        # Each artifact three times, to three replicas; the last replica dies meanwhile.
        plan = [(served[(i + k) % REPLICAS], a) for i, a in enumerate(artifacts)
                for k in range(REPLICAS)]
        answers = []
        with ThreadPoolExecutor(max_workers=12) as pool:
            pending = [pool.submit(s.post, "/v1/verify", {"artifact": a}) for s, a in plan]
            for done, future in enumerate(as_completed(pending)):
                if done == 4:
                    served[2].process.send_signal(signal.SIGKILL)
                answers.append(future.result())
        assert served[2].process.wait(timeout=30) == -signal.SIGKILL
        assert {status for status, _ in answers} <= {200, DOWN}
        accepted = _accepted_and_logged(answers, pg_url)
        assert len({body["jti"] for body in accepted}) == len(accepted)  # once each at most
        # The operator sees the dead one: its heartbeat row stays, and falls behind.
        dead = served[2].process.pid

        with Store.open(pg_url) as store:
            def shown_stale() -> bool:
                return any(r.pid == dead and r.stale(int(time.time()), 2)
                           for r in replica_rows.listed(store))
            _wait_for(shown_stale, "listed as stale")
        # The survivors serve on.
        _, challenge = served[0].post("/v1/challenges", {})
        status, body = served[1].post(
            "/v1/verify", {"artifact": rig.issue(nonce=challenge["nonce"]).decode()})
        assert (status, body["accepted"]) == (200, True), body
    _logged(pg_url)
    audit_verifies(home, pg_url)


@pytest.fixture
def own_server() -> Iterator[pg.PostgresServer]:
    with pg.started() as server:
        yield server


def test_postgresql_stopped_mid_load_then_the_replicas_resume_by_themselves(
        rig: Rig, own_server: pg.PostgresServer) -> None:
    with own_server.database() as url:
        policy, home = _policy(rig), _keyed_home(rig, url)
        with _replicas(policy, home, url) as served:
            artifacts = _issued(rig, served, 9)
            answers = []
            with ThreadPoolExecutor(max_workers=3) as pool:
                pending = [pool.submit(served[n % REPLICAS].post, "/v1/verify",
                                       {"artifact": a}) for n, a in enumerate(artifacts)]
                for done, future in enumerate(as_completed(pending)):
                    if done == 2:
                        own_server.stop("immediate")
                    answers.append(future.result())
            assert not own_server.running()
            for replica in served:  # down: not ready (503), verifications denied, never 500
                assert replica.ready() == 503
                answers.append(replica.post("/v1/verify", {"artifact": artifacts[0]}))
            assert {status for status, _ in answers} <= {200, 503}
            assert all(not body["accepted"] for status, body in answers[len(artifacts):])
            for status, body in answers:
                if status == 200 and not body["accepted"]:  # named: the store is gone
                    assert set(body["reasons"]) == {"audit_unavailable"}, body

            own_server.start()
            for replica in served:
                _wait_for(lambda r=replica: r.ready() == 200, "serving again")
            _accepted_and_logged(answers, url)  # none accepted without its entry
            _, challenge = served[2].post("/v1/challenges", {})
            status, body = served[0].post(
                "/v1/verify", {"artifact": rig.issue(nonce=challenge["nonce"]).decode()})
            assert (status, body["accepted"]) == (200, True), body
        audit_verifies(home, url)
