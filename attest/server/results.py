"""Signed attestation results (attest.ear) for the service's decisions, and the key that
checks them at ``GET /v1/keys``.

Every decision /v1/verify and /v1/verify:batch answer carries ``"result"``: an EAR JWT
signed by the verifier's result key (made in its home on the first `attest serve`),
with the decision's audit receipt inside. The receipt needs a signed tree head that
covers the decision: the service's audit log signs one in every group commit
(HeadPolicy(every=1): one signature and one head row per commit, shared by all the
decisions in it), so a receipt here is a read, never a signature of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.responses import JSONResponse

from attest.artifact import jws
from attest.audit.log import HeadPolicy
from attest.audit.proofs import InclusionProof
from attest.decision import Decision
from attest.ear import keys, token
from attest.ear import result as ear
from attest.errors import AttestError

if TYPE_CHECKING:
    from attest.server.app import Service

# The service's audit log signs a head with every commit: each answer's receipt exists.
HEADS = HeadPolicy(every=1)

JWKS: dict[str, Any] = {
    "type": "object", "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {
        "type": "object", "required": ["kty", "crv", "x", "y", "kid"],
        "properties": {name: {"type": "string"}
                       for name in ("kty", "crv", "x", "y", "kid", "alg", "use")}}}},
}


class Results:
    """Signs the results of one service's decisions with the key of its home."""

    def __init__(self, service: Service, home: Path, *, ttl: int = ear.DEFAULT_TTL_S) -> None:
        self.service = service
        # Each decision's receipt, read with those of its group commit (attest.audit.log).
        service.log.keep_receipts = True
        self.key = keys.load_or_create(home)
        self.ttl = ttl

    def decide(self, raw: bytes) -> dict[str, Any]:
        """The decision on ``raw`` (logged) as JSON with its signed result. Blocking: one
        hop to the thread pool for the verification and its result together."""
        return self.answer(self.service.verifier.verify(raw), raw)

    def decide_batch(self, raws: Sequence[bytes]) -> list[dict[str, Any]]:
        """:meth:`decide` for a batch: one verification (attest.verify.verifier
        ``verify_batch``), then each decision's result."""
        decisions = self.service.verifier.verify_batch(raws)
        return [self.answer(decision, raw)
                for decision, raw in zip(decisions, raws, strict=True)]

    def answer(self, decision: Decision, raw: bytes) -> dict[str, Any]:
        """``decision`` on ``raw`` as JSON with its signed result (reports use it too)."""
        service = self.service
        receipt = None if decision.audit_index is None else self._receipt(decision.audit_index)
        nonce = _nonce(raw)
        signed = ear.issue(decision, ear.Subject(raw, nonce), key=self.key,
                           policy_id=service.policy.id, policy_digest=service.policy.digest,
                           receipt=receipt, now=int(service.clock()), ttl=self.ttl)
        return {**decision.to_json(), "artifact_sha256": decision.artifact_sha256,
                "result": signed}

    def _receipt(self, index: int) -> InclusionProof | None:
        try:
            return self.service.log.receipt(index)
        except Exception:  # noqa: BLE001 - the answer still goes out, without a receipt
            # The decision stands (it is logged); its result says it has no receipt, and a
            # relying party that requires one (attest run does) refuses it.
            return None


def _nonce(raw: bytes) -> str | None:
    """The artifact's nonce, when it has one (parsed again: the decision does not carry
    it), so that a denial too is bound to the request it answers."""
    try:
        return jws.parse(raw).claims.eat_nonce
    except AttestError:  # no artifact, no nonce: the result names none
        return None


def mount(app: FastAPI, results: Results) -> None:
    @app.get("/v1/keys", tags=["results"],
             responses={200: {"description": "OK",
                              "content": {"application/json": {"schema": JWKS}}}})
    async def result_keys() -> JSONResponse:
        """The public key (JWKS, RFC 7517) that checks this service's attestation
        results; hosts trust it with --verifier-key (`attest result key` prints it)."""
        return JSONResponse({"keys": [token.jwk(results.key.public_key())]})

