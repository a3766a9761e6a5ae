"""Request bodies: read with a cap before anything parses them, then strict JSON.

Everything here is the sender's: a body is refused by its Content-Length, or else by
counting while it streams in, before a byte of it is parsed; then attest.strictjson
(no duplicate members, no NaN, bounded depth), then the shape the endpoint wants.
Each refusal is a :class:`RequestRefused` the application renders as a JSON error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from attest import strictjson

# A request body is at most a few members deep ({"artifacts": ["..."]}).
MAX_BODY_DEPTH = 4


@dataclass
class RequestRefused(Exception):
    """A request refused before any verification: HTTP ``status`` with a JSON error body."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


def too_large(limit: int) -> RequestRefused:
    return RequestRefused(413, "body_too_large", f"the request body exceeds {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body of ``request``, refused (413) past ``limit`` bytes without reading on."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise RequestRefused(400, "bad_content_length",
                                 "Content-Length is not a decimal number")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    # Chunked bodies declare nothing: counted as they arrive, never held past the cap.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object (an empty body is ``{}``); 400 for what is not one."""
    # Only no bytes at all is "no body": a body of whitespace alone is not a JSON text
    # (RFC 8259 needs a value), so it is malformed like any other non-JSON body.
    if not body:
        return {}
    try:
        value = strictjson.loads(body, max_depth=MAX_BODY_DEPTH)
    except (ValueError, RecursionError) as exc:
        raise RequestRefused(400, "malformed_json",
                             f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise RequestRefused(400, "malformed_json", "the body is not a JSON object")
    return value


def unprocessable(message: str) -> RequestRefused:
    return RequestRefused(422, "invalid_request", message)


def only_members(body: dict[str, Any], allowed: set[str]) -> None:
    """422 for a member the endpoint does not know: a typo is said, not ignored."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise unprocessable(f"unknown member(s): {', '.join(repr(n[:64]) for n in unknown[:8])}")
