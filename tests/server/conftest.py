"""The service's tests: the FastAPI application on a real store, a host on its own swtpm
(tests/verify/rig.py) issuing the artifacts, requests through FastAPI's TestClient (no
socket) or, for `attest serve`, urllib on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from attest.policy import NonceMode
from attest.server.app import create_app
from attest.store import default_url
from tests.verify.conftest import rig
from tests.verify.rig import Rig

__all__ = ["Service", "rig", "service"]


@dataclass
class Service:
    client: TestClient
    rig: Rig
    home: Path  # the verifier's home: the audit log key
    url: str  # its store


@pytest.fixture
def service(rig: Rig) -> Iterator[Service]:
    """The service for the rig's host (its AK trusted by the policy), nonce required, on
    a SQLite store in a verifier home of its own."""
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    app = create_app(rig.policy(nonce=NonceMode.REQUIRED), url, home, max_batch=4)
    with TestClient(app) as client:
        yield Service(client, rig, home, url)
