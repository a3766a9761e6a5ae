"""A bound on the request bodies one process holds at once, whoever sends them.

Each body is capped (attest.server.bodies), but not how many arrive together: a few
hundred connections each sending a batch body slowly (32 MiB each, under the cap) held
gigabytes before anything was verified, unauthenticated. This middleware counts every
body chunk received against one budget per process, and gives the bytes back when the
request's answer is done (the body and what was parsed from it live that long). A
chunk past the budget is refused: 503 ``busy``; the request was
not decided (a challenge is retried by the clients, attest.host.http).
"""

from __future__ import annotations

import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attest.server.bodies import RequestRefused

DEFAULT_BUDGET = 256 << 20


class BodyBudget:
    """Bytes of request bodies held now, at most ``limit``."""

    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        if limit < 1:
            raise ValueError("the body budget must be positive")
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


class BoundedBodies:
    """ASGI middleware charging each request's body to a :class:`BodyBudget`."""

    def __init__(self, app: ASGIApp, budget: BodyBudget) -> None:
        self.app = app
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held = 0

        async def counted() -> Message:
            nonlocal held
            message = await receive()
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if size:
                if not self.budget.take(size):
                    # Raised where the handler reads its body: the application renders
                    # it as every RequestRefused, a JSON error.
                    raise RequestRefused(503, "busy", "the verifier holds as many request "
                                         "bodies as it may; retry later")
                held += size
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            self.budget.give(held)
