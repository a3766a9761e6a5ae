"""The administrators' API: revocations, the hosts view, the audit log's entries.

Each route needs ``Authorization: Bearer <token>``, a token `attest admin token
create` made (attest.store.tokens: only its hash is stored). No token, a wrong one
or a revoked one is 401 with ``WWW-Authenticate: Bearer`` and a JSON error, the same
for all three. Hosts need no token: their artifacts speak for them.

A revocation here is the one `attest revoke` makes (attest.audit.hooks.revoke_logged):
the revocation, its cascade, their seals and audit entries in one transaction, each
entry naming the token (``admin:<name>``) as the verifier that made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from attest.audit.hooks import revoke_logged
from attest.errors import UsageError
from attest.server import opsschema, schema
from attest.server.bodies import RequestRefused, json_object, only_members, read_body
from attest.store import RevocationKind, hoststate, tokens
from attest.store.tokens import TokenInfo

if TYPE_CHECKING:
    from attest.server.app import Service

API = "/v1"
REVOCATION_BODY_BYTES = 4096
MAX_REASON = 1024
MAX_PAGE = 500
DEFAULT_PAGE = 100
# A host with no acceptance for this long is stale in the hosts view.
DEFAULT_STALE_AFTER = 3600
_REVOCATIONS = ("SELECT id, kind, subject, reason, revoked_at, cascaded_from FROM revocations "
                "WHERE id > :after ORDER BY id LIMIT :limit")
_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="attest"'}
# Bounds SQLite's 64-bit integers: a larger query value is 422, not an overflow.
MAX_INT = 2**62


def unauthorized(message: str) -> JSONResponse:
    refusal = RequestRefused(401, "unauthorized", message)
    return JSONResponse(refusal.to_json(), status_code=401, headers=_UNAUTHORIZED)


async def admin(request: Request, service: Service) -> TokenInfo | JSONResponse:
    """The token the request carries when it is one in force, else the 401 to answer."""
    header = request.headers.get("authorization")
    if header is None:
        return unauthorized("this endpoint needs an administrator's bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return unauthorized("the Authorization header is not a bearer token")
    found = await run_in_threadpool(tokens.check, service.store, token.strip())
    if found is None:
        return unauthorized("the bearer token is not one in force")
    return found


def mount(app: FastAPI, service: Service, *, stale_after: int = DEFAULT_STALE_AFTER) -> None:
    """Add the admin routes to ``app``."""
    secured = schema.SECURED

    @app.post(f"{API}/revocations", tags=["admin"],
              openapi_extra=schema.request_body(opsschema.REVOCATION_REQUEST),
              responses={**schema.responses(opsschema.REVOCATION), **secured})
    async def revoke(request: Request) -> JSONResponse:
        """Revoke an artifact (and its descendants), a key, an AK, a host (with its TPM
        identity), a TPM by its EK, or an approval: as `attest revoke`, logged."""
        who = await admin(request, service)
        if isinstance(who, JSONResponse):
            return who
        body = json_object(await read_body(request, REVOCATION_BODY_BYTES))
        only_members(body, {"kind", "subject", "reason"})
        kind, subject, reason = body.get("kind"), body.get("subject"), body.get("reason")
        kinds = [k.value for k in RevocationKind]
        if kind not in kinds:
            raise _invalid(f"kind must be one of {', '.join(kinds)}")
        if not isinstance(subject, str) or not subject or not _utf8(subject):
            raise _invalid("subject must be a non-empty string")
        if (not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON
                or not _utf8(reason)):
            raise _invalid(f"reason must be a non-empty string of at most {MAX_REASON} "
                           "characters")
        try:
            cascade = await run_in_threadpool(
                revoke_logged, service.store, service.log, RevocationKind(kind), subject,
                reason, now=int(service.clock()),
                verifier_id=revoked_by(service, who.name))
        except UsageError as exc:  # a subject that is not one (not hex, too long)
            raise _invalid(exc.message) from None
        return JSONResponse({"revoked": kind, "subjects": [s for _, s in cascade],
                             "cascade": [{"kind": k.value, "subject": s} for k, s in cascade],
                             "reason": reason})

    @app.get(f"{API}/revocations", tags=["admin"],
             responses={**schema.responses(opsschema.REVOCATIONS), **secured})
    async def revocations(request: Request, after: int = Query(0, ge=0, le=MAX_INT),
                          limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE)) -> JSONResponse:
        """Revocations in the order they were made, a page at a time: pass ``next`` as
        ``after`` for the next page (null: none)."""
        who = await admin(request, service)
        if isinstance(who, JSONResponse):
            return who

        def page() -> list[Any]:
            with service.store.read() as tx:
                return tx.all(_REVOCATIONS, {"after": after, "limit": limit})

        rows = await run_in_threadpool(page)
        return JSONResponse({
            "revocations": [{"id": r.id, "kind": r.kind, "subject": r.subject,
                             "reason": r.reason, "revoked_at": r.revoked_at,
                             "cascaded_from": r.cascaded_from} for r in rows],
            "next": rows[-1].id if len(rows) == limit else None})

    @app.get(f"{API}/hosts", tags=["admin"],
             responses={**schema.responses(opsschema.HOSTS), **secured})
    async def hosts(request: Request,
                    after: str = Query("", max_length=255, pattern=r"^[^\x00]*$"),
                    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE)) -> JSONResponse:
        """Each host's state (trusted, untrusted with reasons, stale, revoked), its last
        decision and last accepted quote, by host id; ``next`` is the next page's
        ``after`` (null: none)."""
        who = await admin(request, service)
        if isinstance(who, JSONResponse):
            return who
        views = await run_in_threadpool(
            lambda: hoststate.hosts(service.store, now=int(service.clock()),
                                    stale_after=stale_after, after=after, limit=limit))
        return JSONResponse({"hosts": [v.to_json() for v in views],
                             "next": views[-1].host if len(views) == limit else None})

    @app.get(f"{API}/audit/entries", tags=["admin", "audit"],
             responses={**schema.responses(opsschema.AUDIT_ENTRIES), **secured})
    async def entries(request: Request, start: int = Query(0, ge=0, le=MAX_INT),
                      limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE)) -> JSONResponse:
        """The log's entries from ``start``, at most ``limit``: each its index and its
        data (the canonical JSON the leaf hash is over). Admin only: entries name hosts,
        subjects and reasons."""
        who = await admin(request, service)
        if isinstance(who, JSONResponse):
            return who
        found = await run_in_threadpool(
            lambda: list(service.log.entries(start, start + limit, chunk=limit)))
        return JSONResponse({"entries": [{"index": e.index, "data": bytes(e.data).decode()}
                                         for e in found],
                             "next": found[-1].index + 1 if len(found) == limit else None})


def revoked_by(service: Service, token_name: str) -> str:
    """Who a revocation's audit entries name: the verifier and the admin token's name
    (the API's and the console's revocations alike)."""
    by = f"admin:{token_name}"
    verifier_id = service.verifier.verifier_id
    return by if verifier_id is None else f"{verifier_id} {by}"


def _utf8(text: str) -> bool:
    """Whether the store can keep ``text``: JSON can carry lone surrogates (no UTF-8) and
    NUL (PostgreSQL's text holds none)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _invalid(message: str) -> RequestRefused:
    return RequestRefused(422, "invalid_request", message)
