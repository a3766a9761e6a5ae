"""Continuous attestation on the verifier: hosts' reports and their trust state.

``POST /v1/reports``: what a host's agent pushes at its interval. A report IS an
artifact (attest.artifact) with scope action ``report``, issued by the host like any
other (attest.host.issue) over the policy's PCRs with its runtime log since its last
accepted report (the incremental prefix), and verified by the service's one Verifier:
the same appraisal, the same audit entry, single use of its jti. It must carry the
service's challenge (``eat_nonce``, from ``POST /v1/challenges``): the verifier's own
nonce proves the quote was made after the challenge, on the verifier's clock, and is
consumed by the acceptance, so neither a replayed nor a pre-computed report counts. (A
report counter in the qualifying data would prove order, not freshness, and need a
second per-host state to keep in step.)

The decision moves the host's trust state (attest.store.hosttrust): accepted, trusted;
denied for measurements alone, untrusted; any other denial moves nothing (it may not be
the host's). With ``freshness.report_max_age`` in the policy, every other artifact of a
host that is untrusted or stale is denied (``host_untrusted``, ``host_stale``) by the
Verifier's host gate, inside the audited decision. Reports pass the gate here alone
(verifier.REPORTING, set around this route's verification): a stale host gets trusted
again by reporting, but a report sent to /v1/verify is gated as any artifact.

``GET /v1/hosts/{host}``: the host's trust state and why (administrators' token, as the
hosts list: host names and their troubles are the operator's to read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from attest.artifact import jws
from attest.errors import EvidenceError
from attest.evidence.structures import parse_attest
from attest.reasons import Reason
from attest.server import hostfeed, schema
from attest.server.admin import admin
from attest.server.bodies import json_object, only_members, read_body, unprocessable
from attest.server.chores import Chore
from attest.store import hostreports, hosttrust
from attest.verify import verifier

if TYPE_CHECKING:
    from attest.server.app import Service
    from attest.server.results import Results

API = "/v1"
REPORT_ACTION = verifier.REPORT_ACTION
JOSE_TYPES = ("application/jose",)
# Without report_max_age nothing turns stale by age (the state is only recorded).
NO_AGE = 2**62

REPORT_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["report"], "additionalProperties": False,
    "properties": {"report": {**schema.JWS, "description": "A compact JWS: an artifact "
                              "for action report, answering a challenge (eat_nonce)."}},
}
HOST_TRUST: dict[str, Any] = {
    "type": "object", "required": ["host", "state", "reasons"],
    "properties": {
        "host": {"type": "string"},
        "state": {"type": "string", "enum": ["trusted", "untrusted", "stale"]},
        "reasons": {"type": "array", "items": {"type": "string"},
                    "description": "untrusted: the reason codes of the report that made it"},
        "changed_at": {"type": ["integer", "null"]},
        "last_report_at": {"type": ["integer", "null"]},
        "audit_index": {"type": ["integer", "null"],
                        "description": "The audit entry of the last state change."},
        "report_max_age": {"type": ["integer", "null"]},
        "denial": {"oneOf": [schema.DENIAL, {"type": "null"}]},
        "changed": {"type": "boolean"},
    },
}
# With its signed attestation result, as /v1/verify's: the agent acts on that alone.
REPORT: dict[str, Any] = {
    **schema.DECISION,
    "properties": {**schema.DECISION["properties"], "host_state": HOST_TRUST,
                   "watch": hostfeed.WATCH},
}

def mount(app: FastAPI, service: Service, body_bytes: int, signer: Results) -> None:
    """The routes, and the stale sweep when the policy asks for reports
    (freshness.report_max_age; the Verifier's own host gate denies)."""
    max_age = service.policy.freshness.report_max_age
    if max_age is not None:
        sweep = StaleSweep(service, max_age)
        app.state.stale_sweep = sweep
        app.router.on_startup.append(sweep.start)
        app.router.on_shutdown.insert(0, sweep.stop)  # before the store closes

    @app.post(f"{API}/reports", tags=["continuous"],
              openapi_extra=schema.request_body(REPORT_REQUEST, jose=True),
              responses=schema.responses(REPORT))
    async def report(request: Request) -> JSONResponse:
        """The decision on one report (200 accept or deny, logged) and the host's trust
        state after it. The body is ``{"report": "<compact JWS>"}`` or the JWS itself as
        ``application/jose``."""
        body = await read_body(request, body_bytes)
        raw = body.strip() if _is_jose(request) else _report(json_object(body))
        parsed = _check_report(raw)
        return JSONResponse(await run_in_threadpool(_decide, service, signer, raw, parsed))

    @app.get(f"{API}/hosts/{{host}}", tags=["admin", "continuous"],
             responses={**schema.responses(HOST_TRUST), **schema.SECURED})
    async def host(request: Request,
                   host: str = Path(..., min_length=1, max_length=255,
                                    pattern=r"^[\x21-\x7e]+$")) -> JSONResponse:
        """The host's trust state (trusted, untrusted with its reasons, stale), when it
        last changed (and its audit entry) and its last accepted report."""
        who = await admin(request, service)
        if isinstance(who, JSONResponse):
            return who
        age = service.policy.freshness.report_max_age
        view = await run_in_threadpool(
            lambda: hosttrust.view(service.store, host, now=int(service.clock()),
                                   max_age=age if age is not None else NO_AGE))
        out = view.to_json()
        out["report_max_age"] = age
        denial = view.denial()
        out["denial"] = None if denial is None else denial.to_json()
        return JSONResponse(out)


class StaleSweep(Chore):
    """A daemon thread storing (and logging) hosts turned stale, every ``interval``
    seconds (default: a fifth of report_max_age, 1 to 30 s). Denial does not wait for it
    (the gate derives stale from the time, so a round that fails denies nothing less);
    the audit entry, and the events built on them, come within that interval."""

    def __init__(self, service: Service, max_age: int, *, interval: float | None = None) -> None:
        super().__init__("stale sweep", interval if interval is not None
                         else min(30.0, max(1.0, max_age / 5)))
        self._service = service
        self._max_age = max_age

    def once(self) -> list[str]:
        service = self._service
        return hosttrust.sweep_stale(service.store, service.log, now=int(service.clock()),
                                     max_age=self._max_age,
                                     verifier_id=service.verifier.verifier_id)

    def round(self) -> str | None:
        swept = self.once()
        return f"{len(swept)} hosts turned stale" if swept else None


def _decide(service: Service, signer: Results, raw: bytes,
            parsed: jws.ParsedArtifact | None = None) -> dict[str, Any]:
    # A report counts from when its challenge was issued, never from its arrival: a
    # report quoted on a hoarded long-lived challenge is as old as that challenge.
    quoted_after = _challenged_at(service, raw if parsed is None else parsed)
    reporting = verifier.REPORTING.set(True)  # past the host gate: this route alone
    try:
        decision, unchanged = service.verifier.verify_report(raw, parsed=parsed,
                                                             quoted_after=quoted_after)
    finally:
        verifier.REPORTING.reset(reporting)
    # The signed result, bound to the report and its nonce: what the agent believes.
    out = signer.answer(decision, raw)
    age = service.policy.freshness.report_max_age
    max_age = age if age is not None else NO_AGE
    now = int(service.clock())
    if unchanged is not None:
        # Most reports: the host stays trusted, and the acceptance's own transaction
        # (the verifier's group commit) moved its report time. Nothing else to write;
        # a report on a challenge older than the age left it stale, and says so.
        view, changed = hosttrust.as_of(unchanged, now, max_age), False
    else:
        host = decision.host
        if host is None or hosttrust.moves(decision) is None:
            return out  # not the host's own evidence, or no host: moves nothing
        clock = _quote_clock(raw if parsed is None else parsed)
        if clock is None:
            return out  # no quote to read (never after a decision that moves a state)
        changed = hosttrust.record_report(service.store, service.log, decision, now,
                                          service.verifier.verifier_id, clock=clock,
                                          quoted_after=quoted_after,
                                          runtime=_runtime(raw if parsed is None else parsed))
        view = hosttrust.view(service.store, host, now=now, max_age=max_age)
    # report_max_age: how long the agent may go without an accepted report.
    out["host_state"] = {**view.to_json(), "changed": changed, "report_max_age": age}
    # The host's credential for its own feed: only while it is trusted after this report
    # (an accepted report declined as older, or on a stale challenge, leaves it not).
    if decision.accepted and view.state == hosttrust.TRUSTED:
        out["watch"] = service.watch.issue(view.host)
    return out


def _quote_clock(raw: bytes | jws.ParsedArtifact) -> int | None:
    """The TPM clock of the report's quote. Read only for a decision that moves a state,
    whose quote the verifier checked (signature, binding, AK): the clock is the TPM's."""
    try:
        parsed = jws.parse(raw) if isinstance(raw, bytes) else raw
        quote = parsed.claims.evidence.quote
        return parse_attest(quote, Reason.QUOTE_MALFORMED).clock_info.clock
    except EvidenceError:
        return None


def _runtime(raw: bytes | jws.ParsedArtifact) -> hostreports.ReportLog | None:
    """The report's runtime log as it carried it, kept with a state change for the
    console's host page (read only for a decision that moves a state: its log replayed)."""
    try:
        parsed = jws.parse(raw) if isinstance(raw, bytes) else raw
        evidence = parsed.claims.evidence
        base = evidence.runtime_log_base
        return hostreports.ReportLog(evidence.runtime_log, 0 if base is None else base.count)
    except EvidenceError:
        return None


def _challenged_at(service: Service, raw: bytes | jws.ParsedArtifact) -> int:
    """When the report's challenge was issued: the quote was made after it, and nothing
    says how long after, so that is as fresh as the report is. Without one known (never
    after an acceptance, which used it), 0: fail closed, the host reads stale."""
    try:
        nonce = (jws.parse(raw) if isinstance(raw, bytes) else raw).claims.eat_nonce
    except EvidenceError:
        return 0
    issued = None if nonce is None else service.store.nonce_issued_at(nonce)
    return 0 if issued is None else issued


def _check_report(raw: bytes) -> jws.ParsedArtifact | None:
    """A report is an artifact for action ``report`` answering a challenge: anything else
    is not a report (422), whatever the verifier would decide on it as an artifact. What
    does not parse goes to the verifier, which denies (and logs) it (None); what does is
    handed to the verifier parsed."""
    try:
        parsed = jws.parse(raw)
    except EvidenceError:
        return None
    claims = parsed.claims
    if claims.scope.action != REPORT_ACTION:
        raise unprocessable(f"a report is an artifact for action {REPORT_ACTION!r}")
    if claims.eat_nonce is None:
        raise unprocessable("a report answers the service's challenge: eat_nonce is missing")
    return parsed


def _is_jose(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media in JOSE_TYPES


def _report(body: dict[str, Any]) -> bytes:
    only_members(body, {"report"})
    value = body.get("report")
    if not isinstance(value, str):
        raise unprocessable("the body needs the member report: a compact JWS string")
    return value.encode("utf-8", "surrogatepass")
