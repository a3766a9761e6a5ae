"""The service on a placeholder policy and a store of its own: for tests of the HTTP
surface itself (the OpenAPI document, fuzzing), where no artifact is meant to pass."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from attest.policy import render_policy
from attest.policy.load import parse_policy
from attest.server.app import create_app
from attest.store import default_url


def placeholder_app(home: Path, **options: object) -> FastAPI:
    """The application for a policy no TPM satisfies (one sealed PCR of zeros), nonce
    required, on a SQLite store in ``home``."""
    text = render_policy(policy_id="placeholder", sealed_values={0: bytes(32)})
    policy = parse_policy(text.encode(), source="<placeholder>", base_dir=home)
    return create_app(policy, default_url(home), home, **options)  # type: ignore[arg-type]
