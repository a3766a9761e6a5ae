"""A per-host rate limit: a token bucket per key, answering 429 with Retry-After.

The key of a verification is the signing key its artifact's JWS header names (``kid``:
one per host key) with the client's address, read from the first bytes of the body
before anything is verified; of any other request, or of an artifact whose header can't
be read, the client's address alone. The address is part of a kid's key because a kid
is public (every artifact's header shows it): keyed by the kid alone, anyone could spend
a host's bucket with garbage naming its kid and have the host's own runs refused.
Each bucket holds ``burst`` tokens and refills at ``rate`` a second; a
request takes one. Buckets live in an LRU of at most ``max_keys``: memory is bounded
whatever keys clients make up, and an evicted key starts again with a full bucket.

What this is and is not: the header is the client's word, so the limit slows down a
host that misbehaves (a loop calling `attest run`), not an attacker, who can name a
new kid per request (each gets a bucket; the LRU bounds the memory that costs). It is
per process: under ``attest serve --workers N`` each worker keeps its own buckets, so
a host gets up to N times the rate. Health, readiness and metrics are never limited:
a monitor must see a service under load.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attest.server.bodies import RequestRefused

DEFAULT_BURST = 20
DEFAULT_MAX_KEYS = 65_536
# How much of a body is looked at for the header: a JWS header is ~100 bytes.
PEEK_BYTES = 4096
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/health"})
# The console's stylesheet and scripts: a page load fetches several, from a closed list
# of files in the package; counting them would spend an operator's budget on CSS.
UNLIMITED_PREFIX = "/ui/assets/"
_JSON_ARTIFACT = re.compile(rb'^\s*\{\s*"artifact"\s*:\s*"([A-Za-z0-9_-]{1,2048})\.')
_JOSE = re.compile(rb"^\s*([A-Za-z0-9_-]{1,2048})\.")
_KID = re.compile(r"[0-9a-f]{2,256}")


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key, thread-safe, at most ``max_keys`` of them."""

    def __init__(self, rate: float, burst: int = DEFAULT_BURST, *,
                 max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate, burst and max_keys must be positive")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0 when ``key`` may go on (one token taken), else the seconds until it may."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
                self._buckets[key] = bucket
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)  # the least recently used
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(float(self.burst),
                                    bucket.tokens + (now - bucket.at) * self.rate)
                bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


def artifact_key(prefix: bytes) -> str | None:
    """``kid:<hex>`` from the JWS header at the start of a verify body, or None."""
    found = _JSON_ARTIFACT.match(prefix) or _JOSE.match(prefix)
    if found is None:
        return None
    segment = found.group(1)
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # a header of nested arrays is the client's to send
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return f"kid:{kid}" if isinstance(kid, str) and _KID.fullmatch(kid) else None


class RateLimit:
    """ASGI middleware applying a :class:`RateLimiter` to the API's requests."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter,
                 refused: Callable[[], None] | None = None) -> None:
        self.app = app
        self.limiter = limiter
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS \
                or scope["path"].startswith(UNLIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = f"addr:{client[0] if client else 'unknown'}"
        if scope["method"] == "POST" and scope["path"] == "/v1/verify":
            receive, prefix = await _peek(receive)
            kid = artifact_key(prefix)
            if kid is not None:
                key = f"{kid} {key}"  # the kid is anyone's to name: never alone
        wait = self.limiter.take(key)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        if self.refused is not None:
            self.refused()
        refusal = RequestRefused(429, "rate_limited",
                                 "too many requests for this host; retry later")
        body = json.dumps(refusal.to_json()).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, math.ceil(wait))).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _peek(receive: Receive) -> tuple[Receive, bytes]:
    """The first PEEK_BYTES (or fewer) of the body, and a receive that replays them."""
    held: list[Message] = []
    size = 0
    while size < PEEK_BYTES:
        message = await receive()
        held.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    prefix = b"".join(m.get("body", b"") for m in held if m["type"] == "http.request")

    async def replay() -> Message:
        if held:
            return held.pop(0)
        return await receive()

    return replay, prefix[:PEEK_BYTES]
