"""`attest serve --workers 2 --rate-limit`: the operations endpoints on a real uvicorn,
and the limits reaching every worker process through the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attest.policy import NonceMode
from attest.store import default_url
from tests.server.test_serve import SERVING
from tests.verify.rig import Rig


@contextmanager
def _served(policy: Path, home: Path, *extra: str) -> Iterator[str]:
    home.mkdir(exist_ok=True)
    env = {**os.environ, "ATTEST_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "serve", "--policy", str(policy),
         "--store", default_url(home), "--port", "0", *extra], env=env,
        stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = SERVING.search(line)
        assert found, line
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        server.send_signal(signal.SIGTERM)
        _, rest = server.communicate(timeout=30)
    assert "Traceback" not in rest, rest


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
    rig.policy(nonce=NonceMode.REQUIRED)
    policy = max(rig.tmp.glob("policy-*.yaml"))
    with _served(policy, rig.tmp / "verifier", "--workers", "2", "--rate-limit", "0.001",
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
