"""Which hosts a revocation touches, and what of each it cuts: each host's own feed.

A host's agent watches only its own events (GET /v1/hosts/{host}/events) and must decide
"the artifact I authorized is cut" without knowing any lineage. So every revocation event
names the host it concerns (the ``host`` column) and lists, in ``data["jtis"]``, the jtis
of that host it cuts, or null for "everything of this host":

- an artifact: its own host, ``[jti]``. A cascade from an ancestor is one revocation per
  descendant (attest.store.revocations.record, called by Store.revoke_artifact), so each
  cut artifact is its own event on its own host, wherever the ancestor came from;
- a signing key or an approval: one event per host with artifacts under it, listing
  them all, expired ones too (a supervised command may outlive its artifact's ``exp``:
  a partial list would leave it running); a list longer than :data:`MAX_CUT_BYTES` of
  JSON is null (fail closed: the watcher then stops everything of that host);
- a host, an EK, an AK: null for every host that holds it (an EK moved between host ids
  touches each of them);
- a revocation that touches no host the store knows (a jti never accepted, a key never
  used): one event with no host, seen by administrators only.

An artifact the store never accepted is not on any host's feed: a host's agent authorizes
only what the verifier accepted, which the store holds.
"""

from __future__ import annotations

import json

from attest.store.db import Transaction
from attest.store.records import RevocationKind

# The JSON of the jtis one host's event lists, at most; a host with more artifacts under
# one revoked key or approval gets null (everything). With the other members at their
# longest (a 1024-character reason escaped to 6 KB), an event stays inside MAX_EVENT_DATA.
MAX_CUT_BYTES = 8_000

Touched = list[tuple[str | None, list[str] | None]]
"""(host, the jtis cut on it or None for everything) per host; host None: none known."""

_ARTIFACT_HOST = "SELECT host FROM artifacts WHERE jti = :jti"
_AK_HOSTS = "SELECT host FROM enrollments WHERE ak_name = :subject"
_EK_HOSTS = ("SELECT host FROM host_eks WHERE ek = :subject UNION "
             "SELECT enrollments.host FROM ak_eks JOIN enrollments "
             "ON enrollments.ak_name = ak_eks.ak_name WHERE ak_eks.ek = :subject")
# Neither artifacts.kid nor artifact_approvals.approval is indexed: a scan, at the time of
# a revocation only (rare, an operator's act), never on a decision's path.
_KEY_CUT = "SELECT host, jti FROM artifacts WHERE kid = :subject ORDER BY host, jti"
_APPROVAL_CUT = ("SELECT artifacts.host, artifacts.jti FROM artifact_approvals "
                 "JOIN artifacts ON artifacts.jti = artifact_approvals.jti "
                 "WHERE artifact_approvals.approval = :subject "
                 "ORDER BY artifacts.host, artifacts.jti")


def touched(tx: Transaction, kind: RevocationKind, subject: str) -> Touched:
    """The hosts the revocation of ``(kind, subject)`` touches, each with what it cuts
    there (see the module's rule), in host order; ``[(None, None)]`` when none is known."""
    found: Touched
    if kind is RevocationKind.HOST:
        found = [(subject, None)]
    elif kind is RevocationKind.ARTIFACT:
        host = tx.scalar(_ARTIFACT_HOST, {"jti": subject})
        found = [] if host is None else [(str(host), [subject])]
    elif kind in (RevocationKind.AK, RevocationKind.EK):
        sql = _AK_HOSTS if kind is RevocationKind.AK else _EK_HOSTS
        found = [(host, None) for host in sorted({row.host for row in
                                                  tx.all(sql, {"subject": subject})})]
    else:  # a signing key or an approval: the artifacts under it, by host
        sql = _KEY_CUT if kind is RevocationKind.KEY else _APPROVAL_CUT
        cut: dict[str, list[str]] = {}
        for row in tx.all(sql, {"subject": subject}):
            cut.setdefault(row.host, []).append(row.jti)
        found = [(host, jtis if len(json.dumps(jtis)) <= MAX_CUT_BYTES else None)
                 for host, jtis in cut.items()]
    return found or [(None, None)]
