"""Reconcile the store with the log: every change of trust the store holds has its entry.

A log that verifies proves nothing about what was never appended to it. Whoever can
write the database may keep chosen entries out (a trigger while the verifier runs,
entries deleted before a head covers them), but the store's own tables still show
what was accepted and trusted. So, in the audit's read transaction:

- every accepted artifact (``artifacts``, by jti) has an ``accepted`` decision entry;
- every enrollment (``enrollments``, by AK name and host id) has an ``enrolled`` entry
  for that AK as that host (a host rewritten in place makes the AK speak for another
  host id);
- every revocation (``revocations``, by kind and subject) has a ``revoked`` entry;
- and the other way round, every ``revoked`` entry has its revocation in the store:
  attest never lifts a revocation, and the verifier reads only the table, so a row
  deleted by whoever writes the database would silently restore trust.

The entries are read once; each is remembered as a 16-byte digest of what it vouches
for, so memory grows with the log by tens of bytes an entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from attest import strictjson
from attest.audit.entry import EntryKind, Outcome, fit
from attest.store.db import Transaction

_CHUNK = 5000
MAX_NAMED = 100  # missing entries named one by one; the rest are counted

_ENTRIES = "SELECT data FROM audit_entries ORDER BY idx"
_ARTIFACTS = "SELECT jti FROM artifacts ORDER BY jti"
_ENROLLMENTS = "SELECT ak_name, host FROM enrollments ORDER BY ak_name"
_REVOCATIONS = "SELECT kind, subject FROM revocations ORDER BY id"


def missing_entries(tx: Transaction) -> tuple[list[str], int]:
    """What the store holds that the log does not record: (the first named, how many)."""
    logged = {digest for digest, _ in _vouched(tx)}
    named: list[str] = []
    count = 0
    for what, key in _held(tx):
        if _digest(key) in logged:
            continue
        count += 1
        if len(named) < MAX_NAMED:
            named.append(what)
    return named, count


def lifted_revocations(tx: Transaction) -> tuple[list[str], int]:
    """Revocations the log records that the store no longer holds: (the first named, how
    many). attest never deletes a revocation; only a writer of the database does."""
    held = {_digest(f"{EntryKind.REVOCATION}\0{fit(f'{row.kind}:{row.subject}')}")
            for row in tx.stream(_REVOCATIONS, chunk=_CHUNK)}
    named: list[str] = []
    count = 0
    seen: set[bytes] = set()
    for digest, subject in _vouched(tx):
        if subject is None or digest in held or digest in seen:
            continue
        seen.add(digest)
        count += 1
        if len(named) < MAX_NAMED:
            kind, _, value = subject.partition(":")
            named.append(f"revocation of {_shown(kind)[1:-1]} {_shown(value)}")
    return named, count


def _vouched(tx: Transaction) -> Iterator[tuple[bytes, str | None]]:
    """A digest of each change of trust the log records, with the subject of a
    revocation (None for the other changes)."""
    for row in tx.stream(_ENTRIES, chunk=_CHUNK):
        try:
            value = strictjson.loads(row.data)
        except (ValueError, UnicodeDecodeError):
            continue  # a damaged entry: the log check names it
        if not isinstance(value, dict):
            continue
        kind, outcome = value.get("kind"), value.get("decision")
        if kind == EntryKind.DECISION and outcome == Outcome.ACCEPTED:
            key = value.get("jti")
            if isinstance(key, str):
                yield _digest(f"jti\0{key}"), None
        elif (kind, outcome) == (EntryKind.ENROLLMENT, Outcome.ENROLLED):
            subject, host = value.get("subject"), value.get("host")
            if isinstance(subject, str) and isinstance(host, str):
                yield _digest(f"{kind}\0{host}\0{subject}"), None
        elif (kind, outcome) == (EntryKind.REVOCATION, Outcome.REVOKED):
            subject = value.get("subject")
            if isinstance(subject, str):
                yield _digest(f"{kind}\0{subject}"), subject


def _held(tx: Transaction) -> Iterator[tuple[str, str]]:
    """(what to report, the key its entry vouches under) for each change in the store."""
    for row in tx.stream(_ARTIFACTS, chunk=_CHUNK):
        # Named as the entry names it (attest.audit.entry.fit: a digest when too long).
        yield f"accepted artifact {_shown(row.jti)}", f"jti\0{fit(row.jti)}"
    for row in tx.stream(_ENROLLMENTS, chunk=_CHUNK):
        yield (f"enrollment of AK {_shown(row.ak_name)} as host {_shown(row.host)}",
               f"{EntryKind.ENROLLMENT}\0{fit(row.host)}\0{fit(f'ak:{row.ak_name}')}")
    for row in tx.stream(_REVOCATIONS, chunk=_CHUNK):
        yield (f"revocation of {row.kind} {_shown(row.subject)}",
               f"{EntryKind.REVOCATION}\0{fit(f'{row.kind}:{row.subject}')}")


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def _shown(value: object) -> str:
    # Store values are the writer's choice: quoted, escaped and bounded.
    return repr(str(value)[:80])
