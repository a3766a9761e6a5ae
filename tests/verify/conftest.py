"""The verifier's tests: real artifacts from a host on a swtpm of its own, or recorded on
swtpm (tests/corpus), and real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Host
from tests.corpus import Bench, Corpus
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


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    """The recorded corpus (tests/corpus): real artifacts, verified with no TPM."""
    return Corpus.load()


@pytest.fixture
def bench(corpus: Corpus, tmp_path: Path) -> Iterator[Bench]:
    """A verifier's store and audit log in tmp_path, the corpus's AKs enrolled (logged and
    sealed) and its nonces issued."""
    made = corpus.bench(tmp_path / "bench")
    yield made
    made.close()
