"""Operations: liveness, readiness, metrics, and the audit log's public proofs.

- ``GET /healthz``: the process answers (no store access: a store outage must not get
  the process restarted);
- ``GET /readyz``: the store answers a read; 503 otherwise (take the replica out of the
  load balancer: it would deny everything);
- ``GET /metrics``: Prometheus text (attest.server.metrics), per worker process;
- ``GET /v1/audit/head``, ``/v1/audit/proof/inclusion``, ``/v1/audit/proof/consistency``:
  public. A head is a signed checkpoint (size and root hash) and a proof is hashes: they
  say that entries exist and that the log only grew, not what the entries hold, and a
  relying party given a decision's audit index must be able to check it was logged
  without an administrator's token. Proofs leave the entry's data out (it names hosts
  and subjects: ``/v1/audit/entries`` is admin only). They verify offline against the
  log's verifier key, which a client gets out of band (`attest audit key`), never from
  this service: the key in the head's answer is for identification only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attest.errors import ProofError, UsageError
from attest.server import opsschema, schema
from attest.server.admin import MAX_INT
from attest.server.bodies import RequestRefused
from attest.server.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from attest.server.app import Service

API = "/v1"
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "The log holds no such entry, size or head (yet)",
          "content": {"application/json": {"schema": schema.ERROR}}}}
_READY = "SELECT version FROM schema_versions WHERE component = 'store'"


def mount(app: FastAPI, service: Service, metrics: Metrics) -> None:
    """Add the operations routes to ``app``."""

    @app.get("/healthz", tags=["operations"], responses=schema.responses(schema.HEALTH))
    async def healthz() -> JSONResponse:
        """The process is up (the store is not consulted)."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=["operations"], responses={
        **schema.responses(opsschema.READY),
        503: {"description": "The store is out of reach",
              "content": {"application/json": {"schema": schema.ERROR}}}})
    async def readyz() -> JSONResponse:
        """The store answers: 200; else 503 (this replica can only deny)."""

        def probe() -> None:
            with service.store.read() as tx:
                if tx.scalar(_READY) is None:
                    raise RuntimeError("the store has no schema")

        try:
            await run_in_threadpool(probe)
        except Exception as exc:  # noqa: BLE001 - any failure to read is "not ready"
            refusal = RequestRefused(503, "store_unavailable",
                                     f"the store is out of reach: {type(exc).__name__}")
            return JSONResponse(refusal.to_json(), status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"description": "Prometheus text exposition",
                              "content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}})
    async def metrics_text() -> Response:
        """Prometheus metrics of this worker process."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get(f"{API}/audit/head", tags=["audit"],
             responses={**schema.responses(opsschema.AUDIT_HEAD), **_NOT_FOUND})
    async def head() -> JSONResponse:
        """The latest signed checkpoint of the audit log (404 while none is signed)."""
        signed = await run_in_threadpool(service.log.latest_head)
        if signed is None:
            return JSONResponse(RequestRefused(404, "not_found", "no head is signed yet")
                                .to_json(), status_code=404)
        key = service.log.verifier_key
        return JSONResponse({"size": signed.size, "signed_at": signed.signed_at,
                             "checkpoint": signed.note,
                             "key": None if key is None else key.encode()})

    @app.get(f"{API}/audit/proof/inclusion", tags=["audit"],
             responses={**schema.responses(opsschema.PROOF), **_NOT_FOUND})
    async def inclusion(index: int = Query(ge=0, le=MAX_INT),
                        size: int | None = Query(None, ge=1, le=MAX_INT)) -> JSONResponse:
        """Entry ``index`` is in the tree of ``size`` entries. Without ``size``: a
        receipt, the proof to a signed head that covers the entry (signed now if none
        does yet). The entry's data is left out."""

        def prove() -> dict[str, object]:
            if size is None:
                if index >= service.log.size():
                    raise UsageError(f"entry {index} is not in the log yet")
                proof = service.log.receipt(index)
            else:
                proof = service.log.inclusion_proof(index, size)
            return dataclasses.replace(proof, entry=None).to_json()

        return JSONResponse(await run_in_threadpool(_proved, prove))

    @app.get(f"{API}/audit/proof/consistency", tags=["audit"],
             responses={**schema.responses(opsschema.PROOF), **_NOT_FOUND})
    async def consistency(old: int = Query(ge=1, le=MAX_INT),
                          new: int | None = Query(None, ge=1, le=MAX_INT)) -> JSONResponse:
        """The tree of ``old`` entries is a prefix of the tree of ``new`` (default: the
        latest signed head's)."""
        return JSONResponse(await run_in_threadpool(
            _proved, lambda: service.log.consistency_proof(old, new).to_json()))


def _proved(prove: Callable[[], dict[str, object]]) -> dict[str, object]:
    """The proof ``prove()`` makes; 404 for an entry or a size the log doesn't have (yet)."""
    try:
        result: dict[str, object] = prove()
    except UsageError as exc:
        raise RequestRefused(404, "not_found", exc.message) from None
    except ProofError as exc:
        # The log is missing what it should hold: the operator's to repair (attest audit
        # verify), not the client's fault.
        raise RequestRefused(503, "audit_unavailable", exc.message) from None
    return result


class Instrumented:
    """ASGI middleware: each request's latency by route (the template of the route that
    matched, ``/v1/enrollments/{id}`` not its id; "other" when none did: a client can't
    add series), and 503 answers counted as store errors."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        metrics = self.metrics

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                metrics.store_errors.inc()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router records the route it matched in the scope it was given.
            route = getattr(scope.get("route"), "path", None)
            metrics.latency.labels(route if isinstance(route, str) else "other").observe(
                time.perf_counter() - started)
