"""Each revocation event names the host it concerns and the jtis it cuts there
(attest.store.eventhosts), so that a host's agent decides "my artifact is cut" from its
own feed alone, without lineage."""

from __future__ import annotations

from typing import Any

from attest.store import ApprovalUse, Store
from attest.store import events as stored
from attest.store.eventhosts import MAX_CUT_BYTES
from tests.store.helpers import AK, KID, T0, clock, record

OTHER_AK = "000b" + "b2" * 32
AK1 = bytes.fromhex("000b" + "11" * 32)
AK2 = bytes.fromhex("000b" + "22" * 32)
EK1 = "e1" * 32


def _feed(store: Store, host: str | None = None) -> list[dict[str, Any]]:
    with store.read() as tx:
        return [dict(e.data) | {"_subject": e.subject}
                for e in stored.after(tx, 0, stored.MAX_BATCH, host=host)]


def _accept(store: Store, jti: str, parent: str | None = None, *, host: str,
            ak: str = AK, step: int, approval: ApprovalUse | None = None) -> None:
    store.accept(record(jti, parent, host=host, ak=ak), nonce=None, single_use=True,
                 clock=clock(step), now=T0, approval=approval)


def test_a_cascade_from_an_ancestor_reaches_each_descendants_own_host(store: Store) -> None:
    # An ancestor on host-a, its child on host-b, a grandchild on host-c (delegation
    # across hosts): each cut artifact is its own event on its own host's feed.
    _accept(store, "root", host="host-a", step=1)
    _accept(store, "child", "root", host="host-b", ak=OTHER_AK, step=1)
    _accept(store, "grand", "child", host="host-c", ak="000b" + "c3" * 32, step=1)
    _accept(store, "other", host="host-b", ak=OTHER_AK, step=2)
    store.revoke_artifact("root", "withdrawn", T0 + 5)
    assert [(e["subject"], e["jtis"]) for e in _feed(store, "host-a")] == [("root", ["root"])]
    (child,) = _feed(store, "host-b")
    assert child["jtis"] == ["child"] and child["cascaded_from"] == "root"
    assert [e["jtis"] for e in _feed(store, "host-c")] == [["grand"]]
    assert _feed(store, "host-d") == []


def test_a_key_revocation_lists_each_hosts_artifacts_under_it_expired_too(
        store: Store) -> None:
    for n in range(3):
        _accept(store, f"k{n}", host="host-a", step=n + 1)
    # Past their exp: a supervised command may outlive its artifact, so they are listed.
    store.revoke_key(KID, "key stolen", T0 + 10 * 3600)
    (event,) = _feed(store, "host-a")
    assert event["kind"] == "key" and event["jtis"] == ["k0", "k1", "k2"]


def test_the_longest_listing_with_the_longest_reason_fits_an_event(store: Store) -> None:
    jtis = [f"{n:04}" + "k" * 121 for n in range(MAX_CUT_BYTES // 128)]
    for n, jti in enumerate(jtis):
        _accept(store, jti, host="host-a", step=n + 1)
    store.revoke_key(KID, "\u00e9" * 1024, T0 + 5)  # escaped to 6 KB of JSON
    (event,) = _feed(store, "host-a")
    assert event["jtis"] == jtis and event["reason"] == "\u00e9" * 1024


def test_a_key_cutting_more_than_a_listing_holds_cuts_the_whole_host(store: Store) -> None:
    for n in range(MAX_CUT_BYTES // 128 + 1):  # jtis of 125 characters
        _accept(store, f"{n:04}" + "k" * 121, host="host-a", step=n + 1)
    store.revoke_key(KID, "key stolen", T0 + 5)
    (event,) = _feed(store, "host-a")
    assert "jtis" in event and event["jtis"] is None  # fail closed: everything


def test_an_approval_revocation_reaches_every_host_that_used_it(store: Store) -> None:
    approval = "ab" * 32
    use = ApprovalUse(id=approval, authority="000b" + "cd" * 32, policy_ref="ef" * 32,
                      serial=1)
    _accept(store, "a1", host="host-a", step=1, approval=use)
    _accept(store, "b1", host="host-b", ak=OTHER_AK, step=1, approval=use)
    _accept(store, "b2", host="host-b", ak=OTHER_AK, step=2)  # not under the approval
    store.revoke_approval(approval, "authority withdrew", T0 + 5)
    assert [e["jtis"] for e in _feed(store, "host-a")] == [["a1"]]
    assert [e["jtis"] for e in _feed(store, "host-b")] == [["b1"]]
    assert len(_feed(store)) == 2  # one event per host touched


def test_host_ek_and_ak_revocations_cut_everything_of_each_host_holding_them(
        store: Store) -> None:
    store.enroll("web-1", AK1, b"p1", b"q", None, T0, ek=EK1)
    store.enroll("web-2", AK2, b"p2", b"q", None, T0, ek=EK1, move_host=True)  # TPM moved
    store.revoke_ek(EK1, "TPM lost", T0 + 5)
    for host in ("web-1", "web-2"):
        seen = _feed(store, host)
        assert seen and all(e["jtis"] is None for e in seen), seen
        assert {e["kind"] for e in seen} >= {"ek", "ak"}
    store.revoke_host("web-9", "never enrolled", T0 + 6)
    assert [(e["kind"], e["jtis"]) for e in _feed(store, "web-9")] == [("host", None)]


def test_a_revocation_touching_no_known_host_is_for_administrators_only(
        store: Store) -> None:
    store.revoke_artifact("never-accepted", "pre-emptive", T0)
    (event,) = _feed(store)
    assert "jtis" not in event
    with store.read() as tx:
        assert tx.scalar("SELECT host FROM events") is None
