"""The runtime log prefix digest (attest.eventlog.prefix), against its definition.

The expected values are computed here from the definition in docs/artifacts.md with
hashlib alone, on records written by attest's own encoder: the host and the verifier
must agree on them byte for byte.
"""

from __future__ import annotations

import hashlib

import pytest

from attest.errors import EventLogError
from attest.eventlog import prefix
from attest.eventlog.cel import attest_record, encode_record, measurement_content

LABEL = b"attest runtime log prefix v1"


def _records(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        content = measurement_content("data", f"item-{i}", {"sha256": bytes([i]) * 32})
        out.append(encode_record(attest_record(i, 15, content, ["sha256"])))
    return out


def _by_definition(records: list[bytes]) -> bytes:
    digest = hashlib.sha256(LABEL).digest()
    for record in records:
        digest = hashlib.sha256(digest + record).digest()
    return digest


def test_empty_prefix_is_the_hash_of_the_label() -> None:
    assert hashlib.sha256(LABEL).digest() == prefix.EMPTY
    assert prefix.prefix_digest(b"") == prefix.EMPTY


def test_digest_chains_the_records_as_framed_in_the_file() -> None:
    records = _records(5)
    log = b"".join(records)
    assert prefix.records_of(log) == records
    for count in range(6):
        assert prefix.prefix_digest(log, count) == _by_definition(records[:count])
    assert prefix.prefix_digest(log) == _by_definition(records)


def test_a_suffix_extends_the_prefix_digest() -> None:
    """What the verifier does: the stored digest, extended by the records it is sent."""
    log = b"".join(_records(7))
    head, tail = prefix.split(log, 3)
    assert head + tail == log
    assert prefix.extend(prefix.prefix_digest(log, 3), prefix.records_of(tail)) == \
        prefix.prefix_digest(log)


def test_one_byte_changes_the_digest() -> None:
    log = b"".join(_records(3))
    edited = log.replace(b"item-1", b"item-9")
    assert prefix.prefix_digest(edited, 1) == prefix.prefix_digest(log, 1)
    assert prefix.prefix_digest(edited, 2) != prefix.prefix_digest(log, 2)


@pytest.mark.parametrize("data", [b" \x1e{}\n", b"[{}]", b"\x1e{}\n\x1e{}"])
def test_logs_without_a_prefix_digest_are_refused(data: bytes) -> None:
    with pytest.raises(EventLogError):
        prefix.prefix_digest(data)


def test_a_count_beyond_the_log_is_refused() -> None:
    log = b"".join(_records(2))
    with pytest.raises(EventLogError):
        prefix.prefix_digest(log, 3)
    with pytest.raises(EventLogError):
        prefix.split(log, 3)
