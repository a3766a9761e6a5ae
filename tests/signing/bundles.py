"""Helpers the bundle tests share: signing with the CLI on the rig's swtpm, files to sign,
and editing and judging bundles."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attest.decision import Decision
from attest.verify.signature import ShownFile
from tests.verify.rig import Rig

Json = dict[str, Any]


def sign(rig: Rig, *args: str) -> bytes:
    """`attest sign ARGS --out FILE` on the rig's host (its TPM, no agent): the bundle."""
    out = rig.tmp / f"bundle-{len(list(rig.tmp.glob('bundle-*')))}.json"
    rig.host.ok("sign", *args, "--out", str(out))
    return out.read_bytes()


def file(rig: Rig, name: str, data: bytes) -> Path:
    path = rig.tmp / name
    path.write_bytes(data)
    return path


def shown(*paths: Path) -> list[ShownFile]:
    return [ShownFile(str(p), hashlib.sha256(p.read_bytes()).digest()) for p in paths]


def reasons(decision: Decision) -> set[str]:
    """The reasons of a denial (an acceptance fails the test, with its facts)."""
    assert not decision.accepted, decision.to_json()
    return set(decision.reasons)


def edit(raw: bytes, change: Callable[[Json], None]) -> bytes:
    data = json.loads(raw)
    change(data)
    return json.dumps(data).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
