"""Enrollment and artifact seals: the verifier tells the enrollments it made and the
artifacts it accepted from rows written into its database by someone else.

Whoever can write the database can insert an ``enrollments`` row for an AK of their
choosing (no credential activation, no EK, no audit entry), or move an enrolled AK to
another host id with an UPDATE. ``attest audit verify`` names such rows afterwards;
the seal refuses them when deciding. ``attest enroll`` stores, in the enrollment's own
transaction, a MAC under a key derived from the log key (which lives outside the
database: attest.audit.keys) over every field trust rests on; the audited verifier
(attest.verify.verifier) reads the seal with the enrollment and denies ``ak_unknown``
when it is missing or does not match.

Artifact seals: a child's lineage is checked against its parent's ``artifacts`` row
(scope, exp, depth, digest...). A writer who widens a parent's scope, raises its exp or
inserts a parent never accepted would let children through. The audited acceptance
(attest.audit.hooks.append_decision) stores, in its own transaction, a MAC over the values
the verifier accepted (never the row read back: a row someone prepared under the jti
of a multi-use artifact gets no seal over its values), under its own version label; the
audited verifier denies a child ``lineage_broken`` when its parent's row lacks a
matching seal. Artifacts accepted before seals have none: their children are denied
until the parent is issued again (parents are short-lived: the policy's max_lifetime).

What a seal does not stop: a writer restoring an older sealed row with its seal (a
rollback of that enrollment to what this verifier once enrolled). Re-enrolling an AK
replaces its seal, and a host-id move deletes the seals of the AKs it drops, so only
rows this verifier enrolled and still held can come back that way.
"""

from __future__ import annotations

import hmac

from attest.audit.note import NoteSigner
from attest.store.db import Transaction
from attest.store.records import ArtifactRecord, Enrollment, LogPrefix
from attest.store.schema import artifact_seals, enrollment_seals

# Bumped if the encoding changes: a seal made under another version never matches.
_VERSION = b"attest enrollment seal v1\0"
_ROW = ("SELECT enrollments.ak_name, enrollments.host, enrollments.ak_public, "
        "enrollments.ak_qualified_name, enrollments.ek_certificate, ak_eks.ek AS ek_id "
        "FROM enrollments LEFT JOIN ak_eks ON ak_eks.ak_name = enrollments.ak_name "
        "WHERE enrollments.ak_name = :ak")
_DELETE = "DELETE FROM enrollment_seals WHERE ak_name = :ak"
_INSERT = enrollment_seals.insert()
# Its own label: an artifact seal never passes for an enrollment's, nor the other way.
_ARTIFACT_VERSION = b"attest artifact seal v1\0"
# An artifact allowed several uses keeps its first seal: one statement, where a savepoint
# around a plain INSERT (to survive its conflict) cost three per acceptance.
_INSERT_ARTIFACT = artifact_seals.insert() + " ON CONFLICT (jti) DO NOTHING"


def _field(value: bytes | None) -> bytes:
    """A field that cannot run into the next: absent (0), or present (1) with its length."""
    if value is None:
        return b"\0"
    return b"\1" + len(value).to_bytes(4, "big") + value


def seal_data(*, ak_name: str, host: str, ak_public: bytes, ak_qualified_name: bytes,
              ek_certificate: bytes | None, ek: str | None) -> bytes:
    """The canonical encoding of what an enrollment vouches for: the AK (its name and
    public area, and qualified name), the host id it speaks for, the EK certificate
    and the EK its credential activation ran under."""
    return _VERSION + b"".join(_field(part) for part in (
        ak_name.encode(), host.encode(), bytes(ak_public), bytes(ak_qualified_name),
        None if ek_certificate is None else bytes(ek_certificate),
        None if ek is None else ek.encode()))


def enrollment_data(enrollment: Enrollment) -> bytes:
    return seal_data(ak_name=enrollment.ak_name.hex(), host=enrollment.host,
                     ak_public=enrollment.ak_public,
                     ak_qualified_name=enrollment.ak_qualified_name,
                     ek_certificate=enrollment.ek_certificate, ek=enrollment.ek)


def seal(tx: Transaction, signer: NoteSigner, ak_name: str) -> None:
    """Seal the enrollment of ``ak_name`` (hex) as ``tx`` has it now: read back from the
    transaction that wrote it, so the seal covers exactly the rows that commit."""
    row = tx.first(_ROW, {"ak": ak_name})
    tx.execute(_DELETE, {"ak": ak_name})
    if row is None:  # nothing enrolled (a move dropped it): nothing to vouch for
        return
    data = seal_data(ak_name=row.ak_name, host=row.host, ak_public=row.ak_public,
                     ak_qualified_name=row.ak_qualified_name,
                     ek_certificate=row.ek_certificate, ek=row.ek_id)
    tx.execute(_INSERT, {"ak_name": ak_name, "mac": signer.trust_mac(data)})


def sealed(signer: NoteSigner, enrollment: Enrollment) -> bool:
    """Whether ``enrollment`` carries this verifier's seal over the values it holds."""
    return enrollment.seal is not None and hmac.compare_digest(
        enrollment.seal, signer.trust_mac(enrollment_data(enrollment)))


def artifact_data(record: ArtifactRecord) -> bytes:
    """The canonical encoding of what an accepted artifact's row vouches for: every
    field lineage and the revocation of its descendants rest on (all but when it was
    accepted and whether it is revoked, which the revocations table says)."""
    return _ARTIFACT_VERSION + b"".join(_field(part) for part in (
        record.jti.encode(), record.sha256.encode(),
        None if record.parent_jti is None else record.parent_jti.encode(),
        str(record.depth).encode(), str(record.exp).encode(), record.host.encode(),
        record.kid.encode(), record.ak_name.encode(), record.subject.encode(),
        record.scope.encode(), None if record.approval is None else record.approval.encode()))


def seal_artifact(tx: Transaction, signer: NoteSigner, record: ArtifactRecord) -> None:
    """Seal ``record``, the artifact the verifier is accepting in ``tx``, over the values
    it accepted. An artifact allowed several uses keeps the seal of its first acceptance
    (its row stands too: attest.store.acceptance)."""
    # Sealed by its first acceptance already: the same jti, the same artifact (no row).
    tx.execute(_INSERT_ARTIFACT, {"jti": record.jti,
                                  "mac": signer.trust_mac(artifact_data(record))})


def artifact_sealed(signer: NoteSigner, record: ArtifactRecord) -> bool:
    """Whether ``record`` (a row as the store reads it) carries this verifier's seal
    over the values it holds."""
    return record.seal is not None and hmac.compare_digest(
        record.seal, signer.trust_mac(artifact_data(record)))


# Log prefix seals (incremental logs, attest.store.prefixes): a prefix row says the
# verifier appraised a log it will not see again; a row a database writer inserted or
# changed (a log never appraised, other PCR values, commands never measured) carries no
# matching MAC, and the audited verifier does not use it.
# v2: each PCR value and each command is a field of its own. v1 joined the commands
# with commas, and a command's digest is the host's text: a host that measured "A,B"
# got a seal a database writer could keep over the commands A and B.
_PREFIX_VERSION = b"attest log prefix seal v2\0"


def _fields(parts: list[bytes]) -> bytes:
    """A list of fields as one field: its length, then each part as a field."""
    return _field(len(parts).to_bytes(4, "big") + b"".join(map(_field, parts)))


def log_prefix_data(prefix: LogPrefix) -> bytes:
    """The canonical encoding of what a prefix row vouches for: every field but when."""
    values = [part for bank, value in sorted(prefix.pcr_values)
              for part in (bank.encode(), value)]
    return _PREFIX_VERSION + b"".join(_field(part) for part in (
        prefix.ak_name.encode(), str(prefix.reset_count).encode(),
        str(prefix.restart_count).encode(), prefix.policy_digest.encode(),
        str(prefix.count).encode(), prefix.digest)) + _fields(values) + _fields(
        [command.encode("utf-8", "surrogatepass") for command in sorted(prefix.commands)])


def log_prefix_seal(signer: NoteSigner, prefix: LogPrefix) -> bytes:
    """The seal ``prefix``'s row is written with (attest.store.prefixes), over its values."""
    return signer.trust_mac(log_prefix_data(prefix))


def log_prefix_sealed(signer: NoteSigner, prefix: LogPrefix) -> bool:
    """Whether ``prefix`` (a row as the store reads it) carries this verifier's seal."""
    return prefix.seal is not None and hmac.compare_digest(
        prefix.seal, signer.trust_mac(log_prefix_data(prefix)))
