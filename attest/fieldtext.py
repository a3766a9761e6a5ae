"""Host-chosen text as a record field holds it: bounded, valid Unicode, or its digest.

At the bottom of the stack: the audit entry (attest.audit.entry) and the attestation
result (attest.ear.result) name a jti, host or subject the same way, and a relying
party compares them without importing the audit log.
"""

from __future__ import annotations

import hashlib

MAX_TEXT = 1024  # characters in one field; a jti, host or subject is far shorter


def fit(value: str | None) -> str | None:
    """``value`` as an entry field holds it: itself when it fits (at most MAX_TEXT
    characters of valid Unicode), else ``sha256:`` and the hex digest of its UTF-8 bytes
    (lone surrogates kept as they are). A jti, subject or host comes from an artifact:
    one too long for a field must still let its decision be logged, under a name that
    the store's copy maps to again (attest.audit.reconcile)."""
    if value is None or (len(value) <= MAX_TEXT and encodes(value)):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
