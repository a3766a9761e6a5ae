"""The store reads the console's fleet and host pages make (attest.store.identities.
summaries, hoststate.host, hostrevocations, hostreports), on SQLite and PostgreSQL: the
same statements answer the same on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attest.store import Store, default_url, hostreports, hoststate, identities
from attest.store.hostreports import ReportLog
from attest.store.hostrevocations import for_host
from attest.store.records import RevocationKind
from attest.store.revocations import record as revoke

EK1, EK2 = "1" * 64, "2" * 64


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = default_url(tmp_path)
        with Store.open(url) as opened:
            yield opened
        return
    pg_url: str = request.getfixturevalue("pg_url")
    with Store.open(pg_url) as opened:
        yield opened


def _enrolled(store: Store, host: str, ak: str, ek: str | None, at: int) -> None:
    with store.write() as tx:
        tx.execute("INSERT INTO hosts (host, first_enrolled_at, last_enrolled_at) "
                   "VALUES (:h, :t, :t) ON CONFLICT (host) DO NOTHING", {"h": host, "t": at})
        tx.execute("INSERT INTO enrollments (ak_name, host, ak_public, ak_qualified_name, "
                   "ek_certificate, enrolled_at, updated_at) VALUES (:ak, :h, :p, :p, NULL, "
                   ":t, :t)", {"ak": ak, "h": host, "p": b"x", "t": at})
        if ek is not None:
            identities.admit(tx, host=host, ak_name=ak, ek=ek, now=at, move_host=False)


def test_identities_hoststate_revocations_and_reports_read_alike(store: Store) -> None:
    _enrolled(store, "a", "000b" + "aa" * 32, EK1, 10)
    _enrolled(store, "a", "000b" + "ab" * 32, EK1, 20)  # a newer AK of the same TPM
    _enrolled(store, "b", "000b" + "bb" * 32, EK2, 10)
    _enrolled(store, "c", "000b" + "cc" * 32, None, 10)
    with store.write() as tx:
        revoke(tx, RevocationKind.AK, "000b" + "aa" * 32, "old", 30)
        revoke(tx, RevocationKind.EK, EK2, "stolen", 31)
        tx.execute("INSERT INTO artifacts (jti, sha256, parent_jti, depth, exp, host, kid, "
                   "ak_name, subject, scope, accepted_at) VALUES ('j1', :s, NULL, 0, 99, "
                   "'c', 'k', 'n', 's', '{}', 1)", {"s": "0" * 64})
        revoke(tx, RevocationKind.ARTIFACT, "j1", "bad run", 32)
    with store.read() as tx:
        found = identities.summaries(tx, ["a", "b", "c", "nobody"])
    assert found["a"].ak_name == "000b" + "ab" * 32 and found["a"].aks == 2
    assert found["a"].ak_revoked is None and found["a"].ek == EK1
    assert found["b"].ek_revoked == "stolen" and found["c"].ek is None
    assert "nobody" not in found
    with store.read() as tx:
        assert [(r.kind, r.reason) for r in for_host(tx, "a")] == [("ak", "old")]
        assert [(r.kind, r.reason) for r in for_host(tx, "b")] == [("ek", "stolen")]
        assert [(r.kind, r.subject) for r in for_host(tx, "c")] == [("jti", "j1")]
    view = hoststate.host(store, "a", now=100, stale_after=50)
    assert view is not None and view.host == "a" and view.last_enrolled_at == 10
    assert hoststate.host(store, "nobody", now=100, stale_after=50) is None
    assert hostreports.last(store, "a") is None
    for accepted, log in ((True, b"\x1e{}\n"), (False, b"\x1e{\"x\":1}\n")):
        with store.write() as tx:
            hostreports.record(tx, "a", ReportLog(log, 3), accepted=accepted,
                               reasons="" if accepted else "reference_value_mismatch",
                               now=40, audit_index=7)
    last = hostreports.last(store, "a")
    assert last is not None and not last.accepted and last.runtime == ReportLog(
        b"\x1e{\"x\":1}\n", 3)
    assert last.reasons == ("reference_value_mismatch",) and last.audit_index == 7
