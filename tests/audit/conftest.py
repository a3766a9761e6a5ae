"""Audit log fixtures: a real SQLite store in a temporary home, a log with its key there.

With ATTEST_TEST_POSTGRES set, the store is a new PostgreSQL database instead (see
tests/store/conftest.py); the tests that reach the store through the CLI's home are
marked ``sqlite_only``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from attest.audit import AuditLog, Entry, EntryKind, HeadPolicy, Outcome
from attest.cli.main import cli
from attest.store import Store
from tests.store.helpers import store_url

VECTORS = Path(os.environ.get("ATTEST_VECTORS",
                              Path(__file__).resolve().parents[2].parent / "shared" / "vectors"))
MERKLE = VECTORS / "merkle"
T0 = 1_764_000_000


def entry(n: int, *, accepted: bool = True) -> Entry:
    """The n-th test decision: distinct jti and time, a denial reason when denied."""
    return Entry(EntryKind.DECISION, Outcome.ACCEPTED if accepted else Outcome.DENIED,
                 time=T0 + n, verifier="v1", reasons=() if accepted else ("expired",),
                 artifact=f"{n:064x}", jti=f"jti-{n}", host="host-1", subject="deploy-bot")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def url(home: Path) -> Iterator[str]:
    with store_url(home) as created:
        yield created


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as opened:
        yield opened


@pytest.fixture
def log(store: Store, home: Path) -> AuditLog:
    """A log that signs a head every 4 entries (and not by time)."""
    return AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9))


def fill(log: AuditLog, count: int) -> list[int]:
    """Append ``count`` entries one transaction each, as a verifier would."""
    return [log.record(entry(log.size())) for _ in range(count)]


def run(home: Path, *args: str) -> Result:
    """`attest audit ARGS` with ``home`` as ATTEST_HOME (and so its store)."""
    result = CliRunner().invoke(cli, ["audit", *args],
                                env={"ATTEST_HOME": str(home), "ATTEST_STORE": None},
                                catch_exceptions=False)
    assert "internal error" not in result.output, result.output
    return result
