"""Write-free challenges over HTTP: POST /v1/challenges writes no row; a forged, altered,
foreign, expired or re-used nonce is a denial with its reason; replicas on one database
share the key and single use; consumed nonces are purged once their expiry refuses them.
Artifacts are real, issued on the rig's swtpm."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from attest.policy import NonceMode
from attest.server.app import create_app
from attest.server.noncepurge import GRACE_S, purge_once
from attest.store import Store, challenges, default_url
from tests.server.conftest import Service
from tests.server.serving import challenge_answer, verify
from tests.verify.rig import Rig


class Clock:
    """The service's clock, moved by the test (the TPM's runs on its own)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rows(url: str, table: str) -> int:
    with Store.open(url) as store, store.read() as tx:
        return int(tx.scalar(f"SELECT count(*) FROM {table}"))  # noqa: S608 - a test's own name


def _altered(nonce: str, at: int, bits: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(nonce + "=="))
    raw[at] ^= bits
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _challenge_expired(decision: dict[str, Any]) -> bool:
    return any(d["reason"] == "stale_evidence" and "challenge expired" in d["message"]
               for d in decision["denials"])


@contextmanager
def _replica(rig: Rig, home: Path, url: str, clock: Clock | None = None) -> Iterator[TestClient]:
    app = create_app(rig.policy(nonce=NonceMode.REQUIRED), url, home,
                     **({} if clock is None else {"clock": clock}))
    with TestClient(app) as client:
        yield client


def test_a_challenge_writes_no_row(service: Service) -> None:
    before = _rows(service.url, "nonces")
    answers = [challenge_answer(service.client) for _ in range(10)]
    assert _rows(service.url, "nonces") == before == 0
    assert len({a["nonce"] for a in answers}) == 10
    assert all(len(a["nonce"]) == challenges.TOKEN_CHARS for a in answers)
    # Its expiry is in the nonce itself, under the MAC.
    key = service.client.app.state.service.store.challenge_key(0)  # type: ignore[attr-defined]
    found = challenges.read(key, answers[0]["nonce"])
    assert found is not None and found.expires_at == answers[0]["expires"]


def test_the_answer_is_recorded_at_acceptance_and_a_second_use_denied(service: Service) -> None:
    nonce = challenge_answer(service.client)["nonce"]
    first = verify(service.client, service.rig.issue(nonce=nonce))
    assert first["accepted"] is True, first["denials"]
    assert _rows(service.url, "nonces") == 1
    # Another artifact (its own jti) answering the same challenge.
    again = verify(service.client, service.rig.issue(nonce=nonce))
    assert again["accepted"] is False and again["reasons"] == ["nonce_reused"], again


def test_forged_altered_truncated_and_foreign_nonces_are_unknown(
        service: Service, tmp_path: Path) -> None:
    nonce = challenge_answer(service.client)["nonce"]
    expires_at = 1 + challenges.RANDOM_BYTES + 2 * challenges.TIME_BYTES - 1
    other = tmp_path / "other"
    other.mkdir()
    with _replica(service.rig, other, default_url(other)) as foreign:
        from_elsewhere = challenge_answer(foreign)["nonce"]
    attempts = {
        "forged MAC": _altered(nonce, challenges.TOKEN_BYTES - 1, 0x01),
        "later expiry": _altered(nonce, expires_at, 0x80),
        "truncated": nonce[:-4],
        "another deployment's": from_elsewhere,
    }
    for what, text in attempts.items():
        decision = verify(service.client, service.rig.issue(nonce=text))
        # Denied on the nonce alone, before the store or a signature (Verifier._prepare).
        assert decision["accepted"] is False, what
        assert decision["reasons"] == ["nonce_unknown"], (what, decision["reasons"])
        assert decision["audit_index"] is not None, what  # and logged like any decision
    assert _rows(service.url, "nonces") == 0  # nothing was consumed
    # The genuine one is still good: the attempts spent nothing.
    assert verify(service.client, service.rig.issue(nonce=nonce))["accepted"] is True


def test_an_expired_challenge_is_stale(rig: Rig) -> None:
    home = rig.tmp / "verifier"
    home.mkdir()
    rig_now = float(int(time.time()))
    clock = Clock(rig_now)
    with _replica(rig, home, default_url(home), clock) as client:
        nonce = challenge_answer(client, ttl=30)["nonce"]
        artifact = rig.issue(nonce=nonce)
        clock.now = rig_now + 30  # expires_at is exclusive
        decision = verify(client, artifact)
    assert decision["accepted"] is False
    assert _challenge_expired(decision), decision["denials"]


def test_replicas_on_one_database_share_the_key_and_single_use(rig: Rig) -> None:
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    with _replica(rig, home, url) as one, _replica(rig, home, url) as two:
        nonce = challenge_answer(one)["nonce"]
        accepted = verify(two, rig.issue(nonce=nonce))
        assert accepted["accepted"] is True, accepted["denials"]
        replayed = verify(one, rig.issue(nonce=nonce))
        assert replayed["accepted"] is False and replayed["reasons"] == ["nonce_reused"]
    assert _rows(url, "service_keys") == 1


def test_purged_nonces_stay_refused_by_their_expiry(rig: Rig) -> None:
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    start = float(int(time.time()))
    clock = Clock(start)
    with _replica(rig, home, url, clock) as client:
        nonce = challenge_answer(client, ttl=60)["nonce"]
        assert verify(client, rig.issue(nonce=nonce))["accepted"] is True
        store = client.app.state.service.store  # type: ignore[attr-defined]
        # Within the grace past expiry the row stays: a replica behind still refuses it.
        assert purge_once(store, int(start) + 60 + GRACE_S - 1) == 0
        assert purge_once(store, int(start) + 61 + GRACE_S) == 1
        assert _rows(url, "nonces") == 0
        clock.now = start + 61 + GRACE_S
        again = verify(client, rig.issue(nonce=nonce))
    assert again["accepted"] is False and _challenge_expired(again), again["denials"]


def test_a_forged_nonce_is_denied_before_the_signature_is_checked(service: Service) -> None:
    nonce = challenge_answer(service.client)["nonce"]
    forged = _altered(nonce, challenges.TOKEN_BYTES - 1, 0x01)
    artifact = service.rig.issue(nonce=forged)
    head, payload, signature = artifact.split(b".")
    broken = b".".join([head, payload, signature[:-2] + (b"AA" if signature[-2:] != b"AA"
                                                           else b"BB")])
    assert verify(service.client, broken)["reasons"] == ["nonce_unknown"]
    # With the genuine nonce the same broken signature is what is denied.
    genuine = service.rig.issue(nonce=nonce).split(b".")
    decision = verify(service.client, b".".join([*genuine[:2], broken.split(b".")[2]]))
    assert decision["accepted"] is False and "nonce_unknown" not in decision["reasons"]
    assert "invalid_signature" in decision["reasons"], decision["reasons"]


def test_the_purge_thread_deletes_consumed_nonces_past_the_grace(tmp_path: Path) -> None:
    from attest.server.noncepurge import NoncePurge
    from tests.store.helpers import clock as tpm_clock
    from tests.store.helpers import record

    url = default_url(tmp_path)
    with Store.open(url) as store:
        nonce = store.issue_nonce(60, 1_000_000)
        store.accept(record("j1"), nonce=nonce, single_use=True, clock=tpm_clock(1),
                     now=1_000_001)
        purge = NoncePurge(store, lambda: 1_000_060.0 + GRACE_S + 1, interval=0.01)
        purge.start()
        try:
            deadline = time.monotonic() + 30  # a bound on waiting, not a timing assert
            while _rows(url, "nonces") and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            purge.stop()
        assert _rows(url, "nonces") == 0
