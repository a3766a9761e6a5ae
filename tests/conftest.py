"""Fixtures: a real swtpm for every TPM test; nothing is mocked.

One simulator state is provisioned per session (swtpm_setup with EK
certificates takes ~1 s) and copied for each simulator a test starts, which
takes under a millisecond.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from attest.cli.main import cli
from attest.simulator import Simulator
from tests.pg import PostgresServer, shared
from tests.store.helpers import POSTGRES

VECTORS = Path(os.environ.get("ATTEST_VECTORS",
                              Path(__file__).resolve().parents[1].parent / "shared" / "vectors"))


@pytest.fixture(scope="session")
def provisioned_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A provisioned (never started) simulator state, copied by the other fixtures."""
    if shutil.which("swtpm") is None:
        pytest.fail("swtpm is not installed: run ./scripts/test, which installs it")
    sim = Simulator(tmp_path_factory.mktemp("tpl"))
    sim.provision()
    return sim.state_dir


def _copy_state(template: Path, target: Path) -> Simulator:
    shutil.copytree(template, target)
    return Simulator(target)


@pytest.fixture(scope="session")
def session_swtpm(provisioned_template: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One running simulator shared by the tests that don't stop or kill it.

    Tests issue artifacts on it, each from a home of its own: its runtime PCR must stay at
    its reset value, or no home's empty log explains it. (Checked here, not in an autouse
    fixture, so that tests that need no TPM, like the corpus's, start no swtpm.)"""
    sim = _copy_state(provisioned_template, tmp_path_factory.mktemp("s") / "sim")
    sim.start()
    yield sim
    from attest.tpm.device import open_tpm

    try:
        with open_tpm(sim.tcti) as tpm:
            value = tpm.esapi.pcr_read("sha256:15")[2][0]
        assert bytes(value) == bytes(32), "a test extended PCR 15 on the shared simulator"
    finally:
        sim.stop()


@pytest.fixture
def fresh_swtpm(provisioned_template: Path, tmp_path: Path) -> Iterator[Simulator]:
    """A simulator of its own, for tests that stop, kill or otherwise upset it."""
    sim = _copy_state(provisioned_template, tmp_path / "sim")
    sim.start()
    yield sim
    sim.stop()


@dataclass
class Host:
    """A CLI runner bound to one simulator and one attest home."""

    sim: Simulator
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {"ATTEST_TCTI": self.sim.tcti, "ATTEST_HOME": str(self.home)}

    def run(self, *args: str, input: bytes | None = None) -> Result:
        result = CliRunner().invoke(cli, list(args), env=self.env, input=input,
                                    catch_exceptions=False)
        # An unexpected exception is rendered as "internal error": always a bug.
        assert "internal error" not in result.output, result.output
        return result

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.exit_code == 0, f"attest {' '.join(args)}: {result.output}{result.stderr}"
        return result


@pytest.fixture
def host(session_swtpm: Simulator, tmp_path: Path) -> Host:
    """A provisioned host (identity in a fresh home) on the shared simulator."""
    h = Host(session_swtpm, tmp_path / "home")
    h.ok("provision")
    return h


@pytest.fixture
def fresh_host(fresh_swtpm: Simulator, tmp_path: Path) -> Host:
    h = Host(fresh_swtpm, tmp_path / "fresh-home")
    h.ok("provision")
    return h


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The session's PostgreSQL server (tests/pg.py): skipped without the binaries, unless
    ATTEST_REQUIRE_POSTGRES=1, which fails instead."""
    return shared()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server: its store URL."""
    with postgres.database() as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the tests that need a SQLite store when the store tests run on PostgreSQL."""
    if POSTGRES is None:
        return
    skip = pytest.mark.skip(reason="needs the store on SQLite (ATTEST_TEST_POSTGRES is set)")
    for item in items:
        if item.get_closest_marker("sqlite_only") is not None:
            item.add_marker(skip)
