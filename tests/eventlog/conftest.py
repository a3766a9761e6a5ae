"""Where the shared event-log vectors are: read in place, skipped with a message if absent."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(os.environ.get("ATTEST_VECTORS",
                              Path(__file__).resolve().parents[2].parent / "shared" / "vectors"))
EVENTLOGS = VECTORS / "eventlogs"


@dataclass(frozen=True)
class VectorLog:
    name: str
    log: bytes
    pcrs: dict[str, dict[str, str]]
    expect_match: bool


def vector_names() -> list[str]:
    if not EVENTLOGS.is_dir():
        return []
    return sorted(p.name for p in EVENTLOGS.iterdir() if (p / "binary_bios_measurements").is_file())


def vector_params() -> list[Any]:
    """One pytest param per vector log; a single skipped one when the vectors are absent."""
    names = vector_names()
    if names:
        return names
    return [pytest.param("absent", marks=pytest.mark.skip(
        reason=f"event-log vectors not found at {EVENTLOGS}; set ATTEST_VECTORS"))]


def load_vector(name: str) -> VectorLog:
    folder = EVENTLOGS / name
    meta = json.loads((folder / "pcrs.json").read_text())
    return VectorLog(name, (folder / "binary_bios_measurements").read_bytes(), meta["pcrs"],
                     meta.get("expected_replay_result") == "match")


def require_vectors() -> None:
    if not EVENTLOGS.is_dir():
        pytest.skip(f"event-log vectors not found at {EVENTLOGS}; set ATTEST_VECTORS")


@pytest.fixture
def vectors_dir() -> Path:
    require_vectors()
    return EVENTLOGS
