"""`attest run --verifier` shows each signed denial with its own message: a denial
that names one reason twice (two unmeasured executables in the runtime log) printed
the first message twice, hiding the second executable (found walking through the
service docs)."""

from __future__ import annotations

import time
from pathlib import Path

from attest.artifact import jws
from attest.decision import Decision, Denial
from attest.ear import keys as result_keys
from attest.ear import result as ear
from attest.host.run import decision_from
from attest.reasons import Reason
from tests.server.conftest import Service
from tests.server.serving import challenge


def test_a_reason_named_twice_keeps_both_messages_in_order(service: Service,
                                                           tmp_path: Path) -> None:
    nonce = challenge(service.client)
    raw = service.rig.issue(nonce=nonce)
    key = result_keys.load_or_create(tmp_path / "verifier")
    made = Decision(False, (Denial(Reason.REFERENCE_VALUE_MISMATCH, "record 7: /usr/bin/true"),
                            Denial(Reason.REFERENCE_VALUE_MISMATCH, "record 8: /usr/bin/id"),
                            Denial(Reason.REPLAYED, "seen before")),
                    jti=jws.parse(raw).claims.jti)
    now = int(time.time())
    result = ear.issue(made, ear.Subject(raw, nonce), key=key, policy_id="p",
                       policy_digest="00" * 32, receipt=None, now=now)
    decision = decision_from({**made.to_json(), "result": result}, raw, nonce,
                             [key.public_key()], now)
    assert not decision.accepted
    assert [(d.reason, d.message) for d in decision.denials] == [
        (Reason.REFERENCE_VALUE_MISMATCH, "record 7: /usr/bin/true"),
        (Reason.REFERENCE_VALUE_MISMATCH, "record 8: /usr/bin/id"),
        (Reason.REPLAYED, "seen before")]
