"""Each host's last decision (attest.store.hoststate) on a real store (SQLite, or
PostgreSQL with ATTEST_TEST_POSTGRES): what a group commit writes, and the states the
hosts view derives from it."""

from __future__ import annotations

from attest.decision import Decision, Denial
from attest.reasons import Reason
from attest.store import Store, hoststate
from attest.store.records import RevocationKind

HOUR = 3600


def accepted(host: str | None) -> Decision:
    return Decision(True, host=host)


def denied(host: str | None, *reasons: Reason) -> Decision:
    return Decision(False, tuple(Denial(r, r.value) for r in reasons), host=host)


def record(store: Store, now: int, *decisions: Decision) -> None:
    with store.write() as tx:
        hoststate.record(tx, decisions, list(range(len(decisions))), now)


def view(store: Store, now: int = 1000) -> dict[str, hoststate.HostView]:
    return {v.host: v for v in hoststate.hosts(store, now=now, stale_after=HOUR)}


def test_an_acceptance_then_a_denial_in_one_group_leaves_the_denial_last(store: Store) -> None:
    record(store, 1000, accepted("a"), denied("a", Reason.REPLAYED), accepted("b"))
    hosts = view(store)
    assert hosts["a"].state == hoststate.UNTRUSTED and hosts["a"].reasons == ("replayed",)
    assert hosts["a"].last_accepted_at == 1000
    assert hosts["a"].last_decision == {"accepted": False, "reasons": ["replayed"],
                                        "time": 1000, "audit_index": 1}
    assert hosts["b"].state == hoststate.TRUSTED


def test_denials_never_add_a_host(store: Store) -> None:
    record(store, 1000, denied("made-up", Reason.INVALID_SIGNATURE), denied(None, Reason.REPLAYED),
           denied("x" * 10_000, Reason.REPLAYED))
    assert view(store) == {}


def test_a_later_acceptance_makes_an_untrusted_host_trusted_again(store: Store) -> None:
    record(store, 1000, accepted("a"))
    record(store, 1001, denied("a", Reason.NONCE_REUSED, Reason.REPLAYED))
    assert view(store)["a"].reasons == ("nonce_reused", "replayed")
    record(store, 1002, accepted("a"))
    assert view(store)["a"].state == hoststate.TRUSTED and view(store)["a"].reasons == ()


def test_no_acceptance_within_the_window_is_stale_and_revocation_wins(store: Store) -> None:
    record(store, 1000, accepted("a"), accepted("b"))
    assert view(store, now=1000 + HOUR)["a"].state == hoststate.TRUSTED
    assert view(store, now=1001 + HOUR)["a"].state == hoststate.STALE
    store.revoke_host("b", "lost", 1000)
    assert view(store)["b"].state == hoststate.REVOKED
    assert view(store)["b"].revocation == "lost"


def test_enrolled_hosts_never_accepted_are_stale(store: Store) -> None:
    store.enroll("fresh", bytes.fromhex("000b" + "11" * 32), b"pub", b"qn", None, 900)
    fresh = view(store)["fresh"]
    assert fresh.state == hoststate.STALE and fresh.last_decision is None
    assert fresh.last_enrolled_at == 900


def test_the_view_is_paged_by_host_id(store: Store) -> None:
    record(store, 1000, *(accepted(f"h{n}") for n in range(5)))
    first = hoststate.hosts(store, now=1000, stale_after=HOUR, limit=2)
    rest = hoststate.hosts(store, now=1000, stale_after=HOUR, after=first[-1].host)
    assert [v.host for v in first + rest] == [f"h{n}" for n in range(5)]
    assert RevocationKind.HOST.value == "host"  # what the view's join names


def test_a_denied_host_the_database_cant_hold_never_fails_the_group(store: Store) -> None:
    # A forged artifact's host is anyone's JSON text: NUL, lone surrogates, controls.
    record(store, 1000, accepted("a"), denied("a\x00b", Reason.INVALID_SIGNATURE),
           denied("\ud800", Reason.INVALID_SIGNATURE), denied("tab\t", Reason.REPLAYED))
    assert set(view(store)) == {"a"}


def test_pages_interleave_enrolled_and_accepted_hosts_with_each_page_bounded(
        store: Store) -> None:
    # Each arm of the view's union is read from the cursor, a page at most: hosts only
    # enrolled, only accepted and both, interleaved in id order, come out once each, in
    # order, whatever the page size; the one-host read finds each of them.
    for n in range(0, 30, 3):  # enrolled only: h00, h03, ...
        store.enroll(f"h{n:02d}", bytes.fromhex("000b" + f"{n:02x}" * 32), b"pub", b"qn",
                     None, 900)
    record(store, 1000, *(accepted(f"h{n:02d}") for n in range(1, 30, 3)))  # accepted only
    for n in range(2, 30, 3):  # both
        store.enroll(f"h{n:02d}", bytes.fromhex("000c" + f"{n:02x}" * 32), b"pub", b"qn",
                     None, 900)
    record(store, 1000, *(accepted(f"h{n:02d}") for n in range(2, 30, 3)))
    every = [f"h{n:02d}" for n in range(30)]
    for limit in (1, 2, 4, 7, 30, 100):
        seen: list[str] = []
        after = ""
        while True:
            page = hoststate.hosts(store, now=1000, stale_after=HOUR, after=after, limit=limit)
            assert len(page) <= limit
            seen += [v.host for v in page]
            if len(page) < limit:
                break
            after = page[-1].host
        assert seen == every, limit
    whole = {v.host: v for v in hoststate.hosts(store, now=1000, stale_after=HOUR)}
    for host in every:
        assert hoststate.host(store, host, now=1000, stale_after=HOUR) == whole[host]
    assert whole["h00"].state == hoststate.STALE and whole["h00"].last_enrolled_at == 900
    assert whole["h01"].last_enrolled_at is None and whole["h02"].last_enrolled_at == 900
    assert hoststate.host(store, "h99", now=1000, stale_after=HOUR) is None
