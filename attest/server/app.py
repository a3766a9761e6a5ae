"""The FastAPI application: challenges, verification (one or a batch), health, OpenAPI.

Built by :func:`create_app` around ONE audited :class:`attest.verify.verifier.Verifier`
per process: every decision, accept or deny, is logged before it is answered, and
concurrent requests share its group commit (requests run on the thread pool). Accept
and deny both answer 200 with the decision; only a request that is not one (too large,
not JSON, the wrong shape) answers 400/413/422, with ``{"error": {...}}``, and an
unexpected failure 500 with the same shape: never a traceback. A store out of reach
where no decision is made (a challenge) is 503; a verification is then a logged denial
or, when it can't be logged, a denial saying so (attest.verify.verifier).

The handlers read their bodies themselves (attest.server.bodies) rather than through
FastAPI's models: the cap applies before parsing and the JSON reader is the project's
strict one; the OpenAPI document still describes the bodies (attest.server.schema).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from attest import __version__
from attest.artifact.model import MAX_ARTIFACT_BYTES, MAX_TTL_S
from attest.audit.log import AuditLog
from attest.console import base as console_base
from attest.console import routes as console
from attest.errors import EnvironmentProblem
from attest.policy.model import VerifierPolicy
from attest.server import (
    enrollment,
    events,
    hostfeed,
    inflight,
    replicas,
    reports,
    results,
    schema,
    webhooks,
)
from attest.server.bodies import (
    RequestRefused,
    json_object,
    only_members,
    read_body,
    unprocessable,
)
from attest.server.noncepurge import NoncePurge
from attest.server.operate import OpsConfig, operate
from attest.store import Store
from attest.verify.verifier import Verifier

API = "/v1"
# Room for the JSON around one artifact ({"artifact": "..."}); an artifact itself larger
# than MAX_ARTIFACT_BYTES still reaches the verifier, which denies (and logs) it.
VERIFY_BODY_BYTES = MAX_ARTIFACT_BYTES + 4096
DEFAULT_BATCH = 64
DEFAULT_BATCH_BYTES = 32 << 20
DEFAULT_NONCE_TTL = 120
CHALLENGE_BODY_BYTES = 1024
JOSE_TYPES = ("application/jose",)


class Service:
    """What the handlers share: the verifier, its store and log, and the limits."""

    def __init__(self, policy: VerifierPolicy, store: Store, log: AuditLog, *,
                 verifier_id: str | None, nonce_ttl: int, max_batch: int,
                 max_batch_bytes: int, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.store = store
        self.log = log
        self.verifier = Verifier(policy, store, log, verifier_id=verifier_id, clock=clock)
        self.nonce_ttl = nonce_ttl
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.clock = clock
        # Each accepted report's credential for its host's own feed (attest.server.hostfeed).
        self.watch = hostfeed.WatchCredentials(
            store, clock, hostfeed.lifetime(policy.freshness.report_max_age))

    def close(self) -> None:
        self.store.close()


def create_app(policy: VerifierPolicy, store_url: str, audit_home: Path, *,
               verifier_id: str | None = None, nonce_ttl: int = DEFAULT_NONCE_TTL,
               max_batch: int = DEFAULT_BATCH, max_batch_bytes: int = DEFAULT_BATCH_BYTES,
               clock: Callable[[], float] = time.time,
               operations: OpsConfig | None = None,
               body_budget: int = inflight.DEFAULT_BUDGET,
               subscribers: Sequence[webhooks.Subscriber] = ()) -> FastAPI:
    """The service for ``policy``, on the store at ``store_url`` with the audit log keyed
    in ``audit_home`` (the verifier's home: the log key lives there).

    The store and the log are opened now, so that a store out of reach fails here (an
    AttestError, exit 3 for `attest serve`) rather than on the first request.
    """
    if not 1 <= nonce_ttl <= MAX_TTL_S:
        raise ValueError(f"nonce_ttl must be 1..{MAX_TTL_S} seconds, not {nonce_ttl}")
    if max_batch < 1 or max_batch_bytes < 1:
        raise ValueError("max_batch and max_batch_bytes must be positive")
    store = Store.open(store_url)
    try:
        log = AuditLog.open(store, audit_home, heads=results.HEADS)
        # The challenge key now (the first replica to start makes it): no challenge writes.
        store.challenge_key(int(clock()))
        service = Service(policy, store, log, verifier_id=verifier_id, nonce_ttl=nonce_ttl,
                          max_batch=max_batch, max_batch_bytes=max_batch_bytes, clock=clock)
        signer = results.Results(service, audit_home)
    except BaseException:
        store.close()
        raise
    app = FastAPI(title="attest verifier", version=__version__,
                  openapi_url=f"{API}/openapi.json", docs_url=None, redoc_url=None)
    app.state.service = service
    purge = NoncePurge(store, clock)
    app.router.on_startup.append(purge.start)
    app.router.on_shutdown.append(purge.stop)
    # Webhooks from a thread of their own (attest.server.webhooks): no decision waits.
    deliverer = webhooks.Deliverer(store, subscribers)
    app.state.webhooks = deliverer
    app.router.on_startup.append(deliverer.start)
    app.router.on_shutdown.append(deliverer.stop)
    app.router.on_shutdown.append(service.close)
    _errors(app)
    _routes(app, service, signer)
    results.mount(app, signer)
    enrollment.mount(app, service)  # /v1/enrollments (attest.server.enrollment)
    reports.mount(app, service, VERIFY_BODY_BYTES, signer)  # /v1/reports, /v1/hosts/{host}
    events.mount(app, service)  # /v1/events, server-sent (attest.server.events)
    hostfeed.mount(app, service, service.watch)  # /v1/hosts/{host}/events
    # The bodies held at once, bounded (attest.server.inflight). Added before operate's
    # middleware, so inside it: its refusal raised from a body read reaches the
    # application's handlers (a JSON 503), whoever reads first (the rate limit peeks).
    app.state.body_budget = inflight.BodyBudget(body_budget)
    app.add_middleware(inflight.BoundedBodies, budget=app.state.body_budget)
    operations = operations or OpsConfig()
    operate(app, service, operations)
    # The operator console's pages under /ui/ (attest.console, docs/console-design.md).
    console.mount(app, service, stale_after=operations.stale_after)
    replicas.mount(app, service)  # the heartbeat (attest.server.replicas)
    return app


def from_environment() -> FastAPI:
    """The application `attest serve` configures through the environment: what each of
    uvicorn's worker processes builds for itself (a factory, by import string)."""
    from attest.policy import load_policy

    policy = load_policy(os.environ["ATTEST_SERVE_POLICY"])
    return create_app(policy, os.environ["ATTEST_SERVE_STORE"],
                      Path(os.environ["ATTEST_SERVE_HOME"]),
                      verifier_id=os.environ.get("ATTEST_SERVE_VERIFIER_ID") or None,
                      nonce_ttl=int(os.environ.get("ATTEST_SERVE_NONCE_TTL",
                                                   str(DEFAULT_NONCE_TTL))),
                      operations=OpsConfig.from_environment(),
                      subscribers=webhooks.load_subscribers(Path(hooks)) if (
                          hooks := os.environ.get("ATTEST_SERVE_WEBHOOKS")) else ())


# -- errors -------------------------------------------------------------------------------
def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(RequestRefused(status, code, message).to_json(), status_code=status)


def _first_invalid(exc: Exception) -> str:
    """Which parameter is wrong, and how: its place and name (the API's words) and the
    validator's message; never the value, which is the client's. "The request does not
    fit the API" alone left a client guessing which of its parameters."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if not errors:
        return "the request does not fit the API"
    first = errors[0]
    where = [str(part) for part in first.get("loc", ())]
    place = {"query": "query parameter", "path": "path parameter", "header": "header"}.get(
        where[0] if where else "", "")
    name = ".".join(where[1:]) if place else ".".join(where)
    message = str(first.get("msg", "invalid"))
    said = f"{place} {name}".strip() + f": {message}"
    # The names are the API's and pydantic's messages quote its bounds, but keep the
    # answer plain, short ASCII whatever a validator says.
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in said)[:200]


def _errors(app: FastAPI) -> None:
    def answer(request: Request, status: int, code: str, message: str) -> Response:
        # The console's pages are read by people: the same refusal as a page, not JSON.
        if console_base.is_console(request.url.path):
            return console_base.error_page(status, message)
        return _error(status, code, message)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestRefused)  # noqa: S101 - registered for that class
        if console_base.is_console(request.url.path):
            return console_base.error_page(exc.status, exc.message)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for that class
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return answer(request, exc.status_code, code, str(exc.detail))

    async def invalid(request: Request, exc: Exception) -> Response:
        return answer(request, 422, "invalid_request", _first_invalid(exc))

    async def environment(request: Request, exc: Exception) -> Response:
        # The store or the log out of reach (a challenge can't be recorded): the service
        # is unavailable, not the request wrong. Which path failed is the operator's to
        # read in the server's log, not the client's.
        assert isinstance(exc, EnvironmentProblem)  # noqa: S101 - registered for that class
        code = exc.reason.value if exc.reason is not None else "unavailable"
        return answer(request, 503, code,
                      f"the verifier is unavailable: {type(exc).__name__}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The last line of defence: the client learns that it failed, not how.
        return answer(request, 500, "internal_error", f"internal error: {type(exc).__name__}")

    app.add_exception_handler(RequestRefused, refused)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(EnvironmentProblem, environment)
    app.add_exception_handler(Exception, unexpected)


# -- routes -------------------------------------------------------------------------------
def _routes(app: FastAPI, service: Service, signer: results.Results) -> None:
    @app.get(f"{API}/health", tags=["service"], responses=schema.responses(schema.HEALTH))
    async def health() -> JSONResponse:
        """The service is up; the policy it verifies against."""
        return JSONResponse({"status": "ok", "version": __version__,
                             "policy": {"id": service.policy.id,
                                        "digest": service.policy.digest}})

    @app.post(f"{API}/challenges", tags=["verification"],
              openapi_extra=schema.request_body(schema.CHALLENGE_REQUEST, required=False),
              responses=schema.responses(schema.CHALLENGE))
    async def challenge(request: Request) -> JSONResponse:
        """A single-use nonce for the artifact's ``eat_nonce`` claim, usable for ``ttl``
        seconds (default: the service's). Issuing it writes nothing: the nonce carries
        its expiry under a MAC only the deployment's replicas can make (`attest docs
        service`, Challenges); the acceptance that answers it records it."""
        body = json_object(await read_body(request, CHALLENGE_BODY_BYTES))
        only_members(body, {"ttl"})
        ttl = body.get("ttl", service.nonce_ttl)
        # JSON Schema's integer includes 30.0 (the document says integer): accepted as 30.
        if type(ttl) is float and ttl.is_integer():
            ttl = int(ttl)
        if type(ttl) is not int or not 1 <= ttl <= MAX_TTL_S:
            raise unprocessable(f"ttl must be an integer from 1 to {MAX_TTL_S}")
        # A client may ask for less than the service's lifetime, never more: a week-old
        # challenge says little about freshness. The answer's expires says what it got.
        ttl = min(ttl, service.nonce_ttl)
        now = int(service.clock())
        nonce = await run_in_threadpool(service.store.issue_nonce, ttl, now)
        return JSONResponse({"nonce": nonce, "expires": now + ttl})

    @app.post(f"{API}/verify", tags=["verification"],
              openapi_extra=schema.request_body(schema.VERIFY_REQUEST, jose=True),
              responses=schema.responses(schema.DECISION))
    async def verify(request: Request) -> JSONResponse:
        """The decision on one artifact, logged before it is answered: 200 for accept and
        deny alike. The body is ``{"artifact": "<compact JWS>"}``, or the JWS itself as
        ``application/jose`` (what `attest run --verifier` sends)."""
        body = await read_body(request, VERIFY_BODY_BYTES)
        raw = body.strip() if _is_jose(request) else _artifact(json_object(body))
        return JSONResponse(await run_in_threadpool(signer.decide, raw))

    @app.post(f"{API}/verify:batch", tags=["verification"],
              openapi_extra=schema.request_body(schema.BATCH_REQUEST),
              responses=schema.responses(schema.BATCH))
    async def verify_batch(request: Request) -> JSONResponse:
        """The decisions on up to the service's batch size of artifacts, in order, each
        logged; committed together (one write transaction), each acceptance alone."""
        body = json_object(await read_body(request, service.max_batch_bytes))
        only_members(body, {"artifacts"})
        items = body.get("artifacts")
        if not isinstance(items, list) or not items:
            raise unprocessable("artifacts must be a non-empty list of compact JWS strings")
        if len(items) > service.max_batch:
            raise RequestRefused(413, "batch_too_large", f"a batch holds at most "
                                 f"{service.max_batch} artifacts, not {len(items)}")
        raws = [_text(item, f"artifacts[{i}]") for i, item in enumerate(items)]
        return JSONResponse({"decisions": await run_in_threadpool(signer.decide_batch, raws)})


def _is_jose(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media in JOSE_TYPES


def _artifact(body: dict[str, Any]) -> bytes:
    only_members(body, {"artifact"})
    if "artifact" not in body:
        raise unprocessable("the body needs the member artifact: a compact JWS string")
    return _text(body["artifact"], "artifact")


def _text(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise unprocessable(f"{what} must be a string (a compact JWS)")
    # A JWS is ASCII; other text goes to the verifier as it is, which denies it.
    return value.encode("utf-8", "surrogatepass")

