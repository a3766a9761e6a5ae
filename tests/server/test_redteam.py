"""Attacks on the service and its clients (issue 13's red team): each test is an attack
that once worked, kept so that it keeps failing. The service runs on a real store and
the hosts' artifacts come from a real swtpm (tests/verify/rig.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from attest.policy import NonceMode
from attest.server.app import create_app
from attest.server.operate import OpsConfig
from tests.server.conftest import Service


@pytest.fixture
def limited(service: Service) -> Iterator[TestClient]:
    """The service again on the same store, with the per-host rate limit on; server
    exceptions become answers (what a client over the network sees)."""
    app = create_app(service.rig.policy(nonce=NonceMode.REQUIRED), service.url, service.home,
                     operations=OpsConfig(rate=1000.0, burst=1000))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_jws_header_nested_too_deep_is_no_500_under_the_rate_limit(
        limited: TestClient) -> None:
    """The rate limit reads the artifact's JWS header (its kid) before anything else: a
    header of 1500 nested arrays made its JSON reader raise RecursionError, a 500."""
    header = base64.urlsafe_b64encode(b"[" * 1500).rstrip(b"=").decode()
    bomb = f"{header}.e30.AAAA"
    for answer in (limited.post("/v1/verify", json={"artifact": bomb}),
                   limited.post("/v1/verify", content=bomb,
                                headers={"content-type": "application/jose"})):
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] is False
        assert answer.json()["denials"][0]["reason"] == "malformed_artifact"
