"""The prefix digest of a runtime log: how a host and a verifier name its first N records.

An artifact may carry only the runtime records after a prefix the verifier has
appraised before (``evidence.runtime_log_base``: a record count and this digest).
Both sides compute the digest from the log's bytes exactly as the host's file holds
them, so neither has to re-encode a record, and the verifier can extend a stored
digest by the records of a suffix without the prefix's bytes:

    d(0)   = SHA-256("attest runtime log prefix v1")
    d(i+1) = SHA-256(d(i) || record_i)

where ``record_i`` is the i-th record of the JSON-SEQ log as framed in the file:
its RS (0x1e), its JSON text, its line feed (RFC 7464), up to the next RS. The
digest is defined for JSON-SEQ logs that start with RS (what attest writes); a log
in any other form has no prefix digest, and is sent in full.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from attest.errors import EventLogError

RS = b"\x1e"
LABEL = b"attest runtime log prefix v1"
EMPTY = hashlib.sha256(LABEL).digest()  # d(0): the digest of no record


def records_of(data: bytes) -> list[bytes]:
    """The records of a JSON-SEQ log's bytes, each from its RS to the next (or the end).

    Raises EventLogError for bytes that are not such a log: anything before the first
    RS, or a last record without its line feed (an append that did not finish).
    """
    if not data:
        return []
    if not data.startswith(RS):
        raise EventLogError("a runtime log with a prefix digest is JSON-SEQ starting with RS")
    if not data.endswith(b"\n"):
        raise EventLogError("the last record of the runtime log does not end in a line feed")
    parts = data.split(RS)
    return [RS + part for part in parts[1:]]


def extend(digest: bytes, records: Iterable[bytes]) -> bytes:
    """``digest`` extended by each of ``records`` (framed as :func:`records_of` gives them)."""
    sha256 = hashlib.sha256
    for record in records:
        digest = sha256(digest + record).digest()
    return digest


def prefix_digest(data: bytes, count: int | None = None) -> bytes:
    """The digest of the first ``count`` records of ``data`` (all of them by default)."""
    records = records_of(data)
    if count is not None:
        if not 0 <= count <= len(records):
            raise EventLogError(f"the log has {len(records)} records, not {count}")
        records = records[:count]
    return extend(EMPTY, records)


def split(data: bytes, count: int) -> tuple[bytes, bytes]:
    """``data`` cut after its first ``count`` records: (prefix bytes, suffix bytes)."""
    records = records_of(data)
    if not 0 <= count <= len(records):
        raise EventLogError(f"the log has {len(records)} records, not {count}")
    cut = sum(map(len, records[:count]))
    return data[:cut], data[cut:]
