"""Builders shared by the store tests and the worker processes they start."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attest.store import ArtifactRecord, SeenClock, default_url

AK = "000b" + "a1" * 32
KID = "000b" + "5c" * 32
HOST = "host-1"
T0 = 1_764_000_000
# A PostgreSQL server for the store tests to run on instead of SQLite (conftest.py): a
# server's URL, or "start" for the one the tests start themselves (tests/pg.py).
POSTGRES = os.environ.get("ATTEST_TEST_POSTGRES") or None


def record(jti: str, parent: str | None = None, *, depth: int | None = None,
           ak: str = AK, kid: str = KID, host: str = HOST, body: str = "") -> ArtifactRecord:
    """An accepted-artifact record; ``body`` varies the digest for a different artifact."""
    return ArtifactRecord(
        jti=jti,
        sha256=hashlib.sha256(f"{jti}/{body}".encode()).hexdigest(),
        parent_jti=parent,
        depth=depth if depth is not None else (0 if parent is None else 1),
        exp=T0 + 3600,
        host=host,
        kid=kid,
        ak_name=ak,
        subject="deploy-bot",
        scope=json.dumps({"action": "exec", "argv": ["/bin/true"], "resources": []}),
    )


def clock(ms: int, reset: int = 7, restart: int = 3) -> SeenClock:
    return SeenClock(clock=ms, reset_count=reset, restart_count=restart)


def contend(url: str, worker: int, plan: list[tuple[str, str | None]], barrier: Any,
            results: Any) -> None:
    """Worker process: accept every (jti, nonce) of ``plan`` once; report the jtis won.

    Workers meet at ``barrier`` before every step, so that they all collide on each
    jti or nonce rather than the first one running ahead of the others. The worker
    that releases the barrier is running already and would tend to win every step
    (on PostgreSQL in CI one worker did win all thirty), which would leave the losing
    paths of the others untested by chance. So one worker per step, in turn, goes at
    once and the others wait one to two milliseconds: about one short transaction,
    close enough that they still collide, far enough that the wins rotate.
    """
    import random
    import time

    from attest.store import NonceRejected, Replayed, Store

    won: list[str] = []
    jitter = random.Random(worker)  # noqa: S311 - scheduling jitter, not a secret
    with Store.open(url) as store:
        for step, (jti, nonce) in enumerate(plan):
            barrier.wait()
            if step % barrier.parties != worker:
                time.sleep(0.001 + jitter.random() * 0.001)
            try:
                store.accept(record(jti), nonce=nonce, single_use=True, clock=clock(step),
                             now=T0)
            except (Replayed, NonceRejected):
                continue
            won.append(jti)
    results.put((worker, won))


def raw_artifact(jti: str, parent: str | None) -> dict[str, object]:
    """An artifacts row to insert directly (bypassing accept) to build a situation."""
    return {"jti": jti, "sha256": "0" * 64, "parent_jti": parent, "depth": 1, "exp": T0,
            "host": HOST, "kid": KID, "ak_name": AK, "subject": "s", "scope": "{}",
            "accepted_at": T0}


@contextmanager
def store_url(folder: Path) -> Iterator[str]:
    """The URL of a store for one test: SQLite in ``folder``, or a new database on the
    server POSTGRES names (dropped afterwards)."""
    if POSTGRES is None:
        yield default_url(folder)
        return
    if POSTGRES == "start":
        from tests.pg import shared

        with shared().database() as url:
            yield url
        return
    with _postgres_database(POSTGRES) as url:
        yield url


@contextmanager
def _postgres_database(server: str) -> Iterator[str]:
    """A new database on ``server`` (an SQLAlchemy URL whose user may create databases)."""
    from sqlalchemy import create_engine, make_url, text

    name = f"attest_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
