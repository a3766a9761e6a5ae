"""Every store test runs on a real SQLite file in its own temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attest.store import Store, default_url


@pytest.fixture
def url(tmp_path: Path) -> str:
    return default_url(tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url) as opened:
        yield opened
