"""Every store test runs on a real SQLite file in its own temporary directory.

With ATTEST_TEST_POSTGRES set to a PostgreSQL server's URL (one whose user may create
databases, e.g. ``postgresql+psycopg://postgres@/postgres?host=/tmp/pg``), the ``url``
and ``store`` fixtures give a new database on that server instead, and the tests
marked ``sqlite_only`` are skipped. CI does not set it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attest.store import Store
from tests.store.helpers import store_url


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with store_url(tmp_path) as created:
        yield created


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as opened:
        yield opened
