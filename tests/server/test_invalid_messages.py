"""A 422 names the parameter that is wrong and how, never echoing the client's value
(found walking through docs/service.md: `?index=-1` answered only "the request does
not fit the API")."""

from __future__ import annotations

import pytest

from tests.server.conftest import Service


@pytest.mark.parametrize(("query", "named"), [
    ("index=-1", "query parameter index"),
    ("index=seven", "query parameter index"),
    ("", "query parameter index"),  # missing
])
def test_a_bad_query_parameter_is_named(service: Service, query: str, named: str) -> None:
    answer = service.client.get(f"/v1/audit/proof/inclusion?{query}")
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{named}: "), error


def test_the_clients_value_is_never_echoed(service: Service) -> None:
    hostile = "<script>\u202e\x1b[31m" + "A" * 500
    answer = service.client.get("/v1/audit/proof/inclusion", params={"index": hostile})
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "script" not in message and "AAAA" not in message
    assert message.isascii() and message.isprintable() and len(message) <= 200
