"""`attest enroll --verifier` against a service that will not enroll over HTTP: exit 3
with the service's code and message, and a hint saying what to change in the
verifier's policy (it said only "refused the request")."""

from __future__ import annotations

import json

from tests.conftest import Host
from tests.run.conftest import attest_cli
from tests.server.serving import Quiet, answering


class _Closed(Quiet):
    def do_POST(self) -> None:
        self.answer_json(403, json.dumps({"error": {
            "status": 403, "code": "enrollment_closed",
            "message": "this verifier enrolls no host over the network"}}).encode())


def test_enrollment_closed_is_exit_3_with_a_policy_hint(host: Host) -> None:
    with answering(_Closed) as base:
        refused = attest_cli(host, "enroll", "--verifier", base, "--host", "web-1")
    assert refused.returncode == 3, refused.stderr
    error, hint = refused.stderr.splitlines()[:2]
    assert "enrollment_closed" in error
    assert hint.startswith("hint: ") and "enrollment: store" in hint and "ek_roots" in hint
