"""The API fuzzed from its own OpenAPI document (schemathesis): whatever a client sends,
whether the document allows it (positive) or not (negative), the service answers without
a 5xx and with an answer the document declares (status, media type, body schema).

Every operation the application exposes is covered, whoever added it: the operations
are read from the running application's document. Examples are bounded per operation
and mode (EXAMPLES), so the whole runs in seconds; schemathesis's pytest plugin is not
used (its parametrization does not run under this pytest), Hypothesis drives each
operation's strategy directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.server.placeholder import placeholder_app

EXAMPLES = 30
# What refuses a request the document does not allow: schemathesis's list, and 413 (a
# body over the endpoint's cap, which the document cannot say in bytes).
REFUSALS = ("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
            "429")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[OpenApiSchema]:
    app = placeholder_app(tmp_path)
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": list(REFUSALS)}}})
    try:
        yield schemathesis.openapi.from_asgi("/v1/openapi.json", app, config=config)
    finally:
        app.state.service.close()


def _operations(api: OpenApiSchema) -> list[Any]:
    found = [result.ok() for result in api.get_all_operations()]
    assert found, "the document declares no operation"
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda mode: mode.value)
def test_every_answer_is_declared_and_none_is_a_server_error(
        api: OpenApiSchema, mode: GenerationMode) -> None:
    seen: list[str] = []
    for operation in _operations(api):
        if mode is GenerationMode.NEGATIVE and not _takes_input(operation):
            continue  # nothing to send wrong (GET /v1/health)

        @given(case=operation.as_strategy(generation_mode=mode))
        # Random locally, so each run explores; fixed in CI, so a landing never hangs on
        # a draw (a failure found locally is kept as a plain test).
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  derandomize=os.environ.get("CI") == "true",
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Case) -> None:
            response = case.call_and_validate()
            assert response.status_code < 500, response.text

        fuzz()
        seen.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v1/verify" in seen and "POST /v1/challenges" in seen


def _takes_input(operation: Any) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("requestBody") or raw.get("parameters"))


# -- what the fuzzer found, kept as plain regressions --------------------------------------


def test_an_integral_float_ttl_is_the_integer_the_document_allows(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(placeholder_app(tmp_path, clock=lambda: 1_764_000_000.0)) as client:
        answer = client.post("/v1/challenges", json={"ttl": 30.0})
        assert answer.status_code == 200, answer.text
        assert answer.json()["expires"] == 1_764_000_030
        assert client.post("/v1/challenges", json={"ttl": 30.5}).status_code == 422


def test_a_body_of_whitespace_is_not_an_empty_body(tmp_path: Path) -> None:
    # Schemathesis sent "\r\n" as a body that must be refused: no JSON text is whitespace.
    from fastapi.testclient import TestClient

    with TestClient(placeholder_app(tmp_path)) as client:
        for body in (b"\x0b", b"\x0c", b" \x0b ", b"\r\n", b" \r\n\t"):
            answer = client.post("/v1/challenges", content=body,
                                 headers={"content-type": "application/json"})
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]["code"] == "malformed_json"
        assert client.post("/v1/challenges", content=b"").status_code == 200
