"""Single use under concurrency (issue 13's red team): two application instances on one
SQLite file (two replicas of one deployment), artifacts from a real swtpm answering one
challenge, sent to both at once. Exactly one is accepted."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from attest.policy import NonceMode
from attest.server.app import create_app
from attest.store import default_url
from tests.verify.rig import Rig


def test_one_nonce_answered_at_once_on_two_replicas_is_accepted_once(rig: Rig) -> None:
    home = rig.tmp / "verifier"
    home.mkdir()
    url = default_url(home)
    policy = rig.policy(nonce=NonceMode.REQUIRED)
    with TestClient(create_app(policy, url, home)) as one, \
            TestClient(create_app(policy, url, home)) as two:
        nonce = one.post("/v1/challenges", json={}).json()["nonce"]
        # Each its own jti and bytes, one nonce: what a host user makes with its TPM key.
        artifacts = [rig.issue(nonce=nonce) for _ in range(6)]
        accepted: list[bool] = []
        start = threading.Barrier(len(artifacts))

        def send(client: TestClient, artifact: bytes) -> None:
            start.wait()
            answer = client.post("/v1/verify", json={"artifact": artifact.decode()})
            assert answer.status_code == 200, answer.text
            accepted.append(answer.json()["accepted"])

        threads = [threading.Thread(target=send, args=(one if i % 2 else two, artifact))
                   for i, artifact in enumerate(artifacts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(accepted) == [False] * 5 + [True], accepted
