"""A report's answer carries the signed attestation result an agent acts on, as
/v1/verify's does, and the age the host must report within."""

from __future__ import annotations

import time

from attest.ear import keys as result_keys
from attest.host.run import decision_from
from attest.reasons import Reason
from tests.server.serving import challenge
from tests.server.test_reports import MAX_AGE, Continuous, continuous

__all__ = ["continuous"]


def test_a_report_answer_is_a_signed_result_bound_to_that_report(
        continuous: Continuous) -> None:
    keys = [result_keys.load(continuous.home).public_key()]
    nonce = challenge(continuous.client)
    raw = continuous.rig.issue("agent", action="report", nonce=nonce,
                               now=int(continuous.clock.now))
    answer = continuous.client.post("/v1/reports", json={"report": raw.decode()}).json()
    assert answer["host_state"]["report_max_age"] == MAX_AGE
    decided = decision_from(answer, raw, nonce, keys, int(time.time()))
    assert decided.accepted, decided.denials
    # The same answer for another report, or another nonce, proves nothing.
    other = continuous.rig.issue("agent", action="report", nonce=nonce,
                                 now=int(continuous.clock.now))
    assert not decision_from(answer, other, nonce, keys, int(time.time())).accepted
    assert not decision_from(answer, raw, "AAAA", keys, int(time.time())).accepted
    # Stripped of its result, an acceptance is a denial.
    bare = {k: v for k, v in answer.items() if k != "result"}
    stripped = decision_from(bare, raw, nonce, keys, int(time.time()))
    assert not stripped.accepted and stripped.reasons == (Reason.INVALID_SIGNATURE.value,)
