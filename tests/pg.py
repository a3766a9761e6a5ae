"""A real PostgreSQL server for the tests, started in a temporary folder.

``initdb`` runs once per test session into a template cluster; each :class:`PostgresServer`
copies it and runs ``postgres`` on a unix socket in its own folder (no TCP at all), with
durable commits (``fsync`` and ``synchronous_commit`` on: the store's guarantees are
tested as they hold in production). Tests get a fresh database each (:meth:`database`).

PostgreSQL refuses to run as root: as root, the cluster belongs to ``nobody`` and the
server runs as that user (``runuser``). Without the binaries (Debian's ``postgresql``)
the tests that need a server are skipped, unless ``ATTEST_REQUIRE_POSTGRES=1`` (CI sets
it): then they fail, so that a CI machine without PostgreSQL never passes by skipping.

``ATTEST_TEST_POSTGRES=start`` runs the store and audit tests on the session's server
(tests/store/helpers.py) instead of SQLite: the second pass CI makes.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REQUIRE = os.environ.get("ATTEST_REQUIRE_POSTGRES") == "1"
USER = "attest"  # the cluster's superuser; trust authentication on the socket only
_RUN_AS = "nobody"  # who runs the server when the tests run as root
_SETTINGS = (
    "listen_addresses=''",  # the unix socket only: nothing on the network, not even loopback
    "fsync=on", "synchronous_commit=on",  # durable commits, as deployed
    "max_connections=300",  # several replicas' pools, the tests' own connections
    "shared_buffers=32MB",
    "log_min_messages=warning",
)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            version = re.match(r"\d+", folder.parent.name)
            found.append((int(version.group()) if version else 0, folder))
    return max(found)[1] if found else None


def require_binaries() -> Path:
    """The bin folder; skips the test without one, or fails it when CI requires a server."""
    folder = binaries()
    if folder is None:
        message = "PostgreSQL is not installed (Debian: postgresql); scripts/test installs it"
        if REQUIRE:
            pytest.fail(f"{message}, and ATTEST_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    return folder


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", _RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


def _owned(path: Path) -> None:
    """Make ``path`` (and what is in it) the server user's, when running as root."""
    if os.geteuid() != 0:
        return
    shutil.chown(path, _RUN_AS)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            shutil.chown(os.path.join(root, name), _RUN_AS)


_template: Path | None = None


def _cluster_template(bindir: Path) -> Path:
    """One initdb per process (it takes a second or two); servers copy it."""
    global _template  # noqa: PLW0603 - a per-process cache, like a session fixture
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="attest-pgtpl-"))
        atexit.register(shutil.rmtree, folder, True)
        folder.chmod(0o755)
        data = folder / "data"
        data.mkdir(mode=0o700)
        _owned(folder)
        subprocess.run(
            _as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", USER,
                             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
            check=True, capture_output=True, timeout=120)
        _template = data
    return _template


class PostgresServer:
    """One PostgreSQL server on a unix socket in a folder of its own."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="attest-pg-"))
        self.folder.chmod(0o755)  # the server user creates its socket here
        self.data = self.folder / "data"
        shutil.copytree(_cluster_template(bindir), self.data)
        _owned(self.folder)
        self.log = self.folder / "server.log"

    @property
    def socket_dir(self) -> str:
        return str(self.folder)

    def url(self, database: str = "postgres") -> str:
        """The store URL of ``database`` on this server (psycopg, over the socket)."""
        return f"postgresql+psycopg://{USER}@/{database}?host={self.folder}"

    def start(self) -> None:
        options = " ".join(f"-c {setting}" for setting in (
            *_SETTINGS, f"unix_socket_directories={self.folder}"))
        subprocess.run(
            _as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                             str(self.log), "-w", "-t", "60", "-o", options, "start"]),
            check=True, capture_output=True, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``immediate`` is a crash as far as clients can tell."""
        subprocess.run(
            _as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode,
                             "-w", "-t", "60", "stop"]),
            check=True, capture_output=True, timeout=90)

    def running(self) -> bool:
        status = subprocess.run(
            _as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True, timeout=30, check=False)
        return status.returncode == 0

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def connect(self, url: str) -> Any:
        """A psycopg connection (autocommit) to the database of ``url``, bypassing attest."""
        import psycopg

        name = _database_name(url)
        return psycopg.connect(host=self.socket_dir, user=USER, dbname=name, autocommit=True)

    def create_database(self) -> str:
        """A new, empty database; its store URL."""
        import psycopg

        name = f"attest_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(host=self.socket_dir, user=USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = _database_name(url)
        with psycopg.connect(host=self.socket_dir, user=USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for one test, dropped afterwards: its store URL."""
        url = self.create_database()
        try:
            yield url
        finally:
            if self.running():
                self.drop_database(url)


def _database_name(url: str) -> str:
    """The database of a URL this module made: ``...@/NAME?host=FOLDER``."""
    return url.split("@/", 1)[1].split("?", 1)[0]


@contextmanager
def started() -> Iterator[PostgresServer]:
    """A server of its own (for a test that stops or kills it), removed afterwards."""
    server = PostgresServer(require_binaries())
    try:
        server.start()
        yield server
    finally:
        server.close()


_shared: PostgresServer | None = None


def shared() -> PostgresServer:
    """The session's server, started on first use and stopped when the process exits (the
    store helpers reach it outside pytest's fixtures: tests/store/helpers.py)."""
    global _shared  # noqa: PLW0603 - one server per test process
    if _shared is None:
        server = PostgresServer(require_binaries())
        atexit.register(server.close)
        server.start()
        _shared = server
    return _shared
