"""`attest serve --workers 2 --rate-limit`: the operations endpoints on a real uvicorn,
and the limits reaching every worker process through the environment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from attest.policy import NonceMode
from tests.server.serving import policy_file, served
from tests.verify.rig import Rig


def _status(base: str, path: str, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"{base}{path}", data=data,  # noqa: S310 - loopback
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


def test_serve_with_workers_limits_rates_and_answers_operations(rig: Rig) -> None:
    policy = policy_file(rig, nonce=NonceMode.REQUIRED)
    with served(policy, rig.tmp / "verifier", "--workers", "2", "--rate-limit", "0.001",
                 "--rate-burst", "2") as base:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert _status(base, path)[0] == 200, path
        status, headers, body = _status(base, "/v1/hosts")
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert json.loads(body)["error"]["code"] == "unauthorized"
        # Two workers with a burst of 2 each: at most 4 challenges from this address.
        answers = [_status(base, "/v1/challenges", b"{}") for _ in range(8)]
        codes = [status for status, _, _ in answers]
        assert codes.count(200) <= 4 and 429 in codes, codes
        refused = next(a for a in answers if a[0] == 429)
        assert int(refused[1]["retry-after"]) >= 1
        assert json.loads(refused[2])["error"]["code"] == "rate_limited"
        # Never limited: a monitor sees the service under load.
        assert all(_status(base, "/healthz")[0] == 200 for _ in range(6))
