"""The revocations that concern one host, for the console's host page: of its host id,
of the EKs it is bound to or its AKs were activated under, of its AKs, and of its
artifacts; newest first, bounded."""

from __future__ import annotations

from dataclasses import dataclass

from attest.store.db import Transaction

MAX_SHOWN = 100

# The kinds are RevocationKind's values. Each branch is a lookup by the revocations'
# (kind, subject) key or an artifact's primary key, per revocation row at most.
_FOR_HOST = """\
SELECT r.kind, r.subject, r.reason, r.revoked_at, r.cascaded_from FROM revocations r
WHERE (r.kind = 'host' AND r.subject = :host)
   OR (r.kind = 'ak' AND r.subject IN (SELECT ak_name FROM enrollments WHERE host = :host))
   OR (r.kind = 'ek' AND (r.subject IN (SELECT ek FROM host_eks WHERE host = :host)
       OR r.subject IN (SELECT ak_eks.ek FROM ak_eks JOIN enrollments
                        ON enrollments.ak_name = ak_eks.ak_name
                        WHERE enrollments.host = :host)))
   OR (r.kind = 'jti' AND EXISTS (SELECT 1 FROM artifacts a
                                  WHERE a.jti = r.subject AND a.host = :host))
ORDER BY r.revoked_at DESC, r.id DESC LIMIT :limit"""


@dataclass(frozen=True)
class HostRevocation:
    kind: str
    subject: str
    reason: str
    revoked_at: int
    cascaded_from: str | None


def for_host(tx: Transaction, host: str, limit: int = MAX_SHOWN) -> list[HostRevocation]:
    rows = tx.all(_FOR_HOST, {"host": host, "limit": limit})
    return [HostRevocation(row.kind, row.subject, row.reason, int(row.revoked_at),
                           row.cascaded_from) for row in rows]
