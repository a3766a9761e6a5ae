#!/usr/bin/env python3
"""What a challenge costs: a row per nonce (before) against a minted nonce (now).

Not a test: numbers to read. On a SQLite store on disk (WAL, synchronous=FULL, as the
verifier runs it), for each way: N challenges issued one after another, and the same
through the service (POST /v1/challenges, FastAPI's TestClient: no socket).

    PYTHONPATH=. .venv/bin/python scripts/bench_challenges.py [N]
"""

from __future__ import annotations

import base64
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from attest.store import Store, default_url

T0 = int(time.time())


def row_per_nonce(store: Store) -> Callable[[], str]:
    """The store's issue_nonce before challenges: 32 random bytes, one durable INSERT."""

    def issue() -> str:
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        with store.write() as tx:
            tx.execute("INSERT INTO nonces (nonce, issued_at, expires_at, used_at) "
                       "VALUES (:n, :i, :e, NULL)", {"n": nonce, "i": T0, "e": T0 + 120})
        return nonce

    return issue


def minted(store: Store) -> Callable[[], str]:
    return lambda: store.issue_nonce(120, T0)


def timed(issue: Callable[[], object], count: int) -> tuple[float, float, float]:
    """(challenges per second, p50 us, p99 us)."""
    issue()  # warm: the key read, the connection opened
    samples = []
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        issue()
        samples.append(time.perf_counter() - began)
    total = time.perf_counter() - start
    samples.sort()
    return (count / total, statistics.median(samples) * 1e6,
            samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6)


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory(prefix="bench-challenges-", dir="/var/tmp") as folder:
        home = Path(folder)
        with Store.open(default_url(home)) as store:
            rows = [("row per nonce (before)", row_per_nonce(store)),
                    ("minted, MAC (now)", minted(store))]
            print(f"{count} challenges each, SQLite on disk in {home.parent}")
            print(f"{'':28} {'per s':>10} {'p50 us':>10} {'p99 us':>10}")
            for name, issue in rows:
                rate, p50, p99 = timed(issue, count)
                print(f"{name:28} {rate:10.0f} {p50:10.1f} {p99:10.1f}")
        http(home, count)
    return 0


def http(home: Path, count: int) -> None:
    """The same through the service's challenge route, issuing each way in turn."""
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.server.placeholder import placeholder_app

    (home / "http").mkdir()
    with TestClient(placeholder_app(home / "http")) as client:
        store = client.app.state.service.store  # type: ignore[attr-defined]
        minting = store.issue_nonce
        before = row_per_nonce(store)

        def call() -> object:
            answer = client.post("/v1/challenges", json={})
            if answer.status_code != 200:
                raise SystemExit(f"POST /v1/challenges: {answer.status_code} {answer.text}")
            return answer

        for name, issue in (("POST, row per nonce (before)", lambda ttl, now: before()),
                            ("POST, minted (now)", minting)):
            store.issue_nonce = issue
            rate, p50, p99 = timed(call, count)
            print(f"{name:28} {rate:10.0f} {p50:10.1f} {p99:10.1f}")


if __name__ == "__main__":
    sys.exit(main())
