"""The OpenAPI document is checked in (docs/openapi.json): an API change shows in review.

Regenerate with ``scripts/openapi`` (python -m attest.server.openapi) and commit the
difference; these tests fail until then."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from attest.server import openapi
from tests.server.placeholder import placeholder_app


@pytest.fixture
def service_client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(placeholder_app(tmp_path)) as client:
        yield client


def test_the_checked_in_document_is_the_applications() -> None:
    current = openapi.DEFAULT_PATH.read_text(encoding="utf-8")
    wanted = openapi.render(openapi.document())
    assert current == wanted, ("docs/openapi.json is out of date: run scripts/openapi "
                               "and review the difference")


def test_the_document_is_rendered_the_same_every_time() -> None:
    assert openapi.render(openapi.document()) == openapi.render(openapi.document())


def test_the_served_document_is_the_checked_in_one(service_client: TestClient) -> None:
    served = service_client.get("/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(openapi.DEFAULT_PATH.read_text(encoding="utf-8"))


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    assert openapi.main([str(stale), "--check"]) == 1
    assert openapi.main([str(stale)]) == 0
    assert openapi.main([str(stale), "--check"]) == 0
