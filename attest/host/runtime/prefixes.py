"""What each verifier has acknowledged of this host's runtime log, and what to send it.

A verifier that accepts an artifact says, in its decision's facts, the prefix of the
runtime log it now holds appraised (``runtime_log``: record count and prefix digest,
attest.eventlog.prefix). The home remembers it per verifier (a local store, a URL)
and per boot epoch, in ``$ATTEST_HOME/runtime.prefixes``; the next artifact for that
verifier carries only the records after it (``evidence.runtime_log_base``). A verifier
that no longer knows the prefix (a fresh store, another policy) denies with
``log_prefix_unknown`` and the host sends its whole log once more.

The memory is a hint, never trusted: issuance sends from a remembered prefix only if
the log's first records still have that digest (a log archived by a reboot does not),
and the verifier checks everything again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attest import strictjson
from attest.artifact.model import MAX_ARTIFACT_BYTES, RuntimeLogBase
from attest.errors import EventLogError
from attest.eventlog import prefix as log_prefix
from attest.tpm.files import write_private

MEMORY_NAME = "runtime.prefixes"
# Verifiers remembered per home; the oldest entry goes first beyond it.
MAX_VERIFIERS = 64
MAX_MEMORY_BYTES = 1 << 20
# What an artifact holds besides its runtime log: claims, quote, certification, keys, a
# boot log of a few hundred KiB at most.
ARTIFACT_HEADROOM = 1 << 20


def send_from(log: bytes, known: RuntimeLogBase | None) -> tuple[RuntimeLogBase | None, bytes]:
    """The base and the runtime log bytes to send: the records after ``known`` when the
    log still begins with that prefix, else the whole log (base None)."""
    if known is None:
        return None, log
    try:
        if log_prefix.prefix_digest(log, known.count) != known.digest:
            return None, log
        return known, log_prefix.split(log, known.count)[1]
    except EventLogError:  # fewer records, or not JSON-SEQ: the whole log
        return None, log


def fits_one_artifact(log_size: int) -> bool:
    """Whether ``log_size`` bytes of runtime log fit an artifact with room for the rest
    (base64url makes 4 of every 3 bytes; the other evidence is a few KiB)."""
    return (log_size + 2) // 3 * 4 + ARTIFACT_HEADROOM <= MAX_ARTIFACT_BYTES


def segments(log: bytes, limit: int) -> list[bytes]:
    """``log`` cut into runs of whole records of at most ``limit`` bytes each (a record
    larger than ``limit`` makes a segment of its own)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for record in log_prefix.records_of(log):
        if current and size + len(record) > limit:
            out.append(b"".join(current))
            current, size = [], 0
        current.append(record)
        size += len(record)
    if current:
        out.append(b"".join(current))
    return out


def acknowledged(facts: Any) -> RuntimeLogBase | None:
    """The prefix a decision's facts say the verifier holds, if they say it well formed."""
    entry = facts.get("runtime_log") if isinstance(facts, dict) else None
    if not isinstance(entry, dict):
        return None
    count, digest = entry.get("count"), entry.get("digest")
    if (isinstance(count, bool) or not isinstance(count, int) or count < 1
            or not isinstance(digest, str) or len(digest) != 64):
        return None
    try:
        return RuntimeLogBase(count, bytes.fromhex(digest))
    except ValueError:
        return None


class PrefixMemory:
    """The prefixes verifiers acknowledged, per verifier and boot epoch."""

    def __init__(self, home: Path) -> None:
        self.path = home / MEMORY_NAME

    def _read(self) -> dict[str, Any]:
        try:
            data = self.path.read_bytes()
            if len(data) > MAX_MEMORY_BYTES:
                return {}
            loaded = strictjson.loads(data)
        except (OSError, ValueError):
            return {}  # a hint only: lost, the whole log is sent
        return loaded if isinstance(loaded, dict) else {}

    def get(self, verifier: str, epoch: tuple[int, int] | None) -> RuntimeLogBase | None:
        """What ``verifier`` acknowledged in this boot epoch, if anything."""
        entry = self._read().get(verifier)
        if not isinstance(entry, dict) or epoch is None or entry.get("epoch") != list(epoch):
            return None
        return acknowledged({"runtime_log": entry})

    def put(self, verifier: str, epoch: tuple[int, int] | None, base: RuntimeLogBase) -> None:
        """Remember that ``verifier`` holds ``base`` appraised (in this boot epoch)."""
        if epoch is None:
            return
        known = self._read()
        known.pop(verifier, None)
        known[verifier] = {**base.to_json(), "epoch": list(epoch)}
        while len(known) > MAX_VERIFIERS:
            known.pop(next(iter(known)))
        write_private(self.path, json.dumps(known, sort_keys=False).encode())
