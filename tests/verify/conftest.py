"""The verifier's tests: real artifacts from a host on a swtpm of its own, real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Host
from tests.verify.rig import Rig


@pytest.fixture
def rig(fresh_host: Host, tmp_path: Path) -> Iterator[Rig]:
    """A host with the PCR-bound key ``default`` and one runtime measurement (``ls``).

    Its simulator is its own, so tests may extend PCRs, measure, or restart it.
    """
    fresh_host.ok("key", "create")
    fresh_host.ok("measure", "command", "--", "ls")
    made = Rig(fresh_host, tmp_path / "rig")
    made.tmp.mkdir()
    yield made
    made.close()
