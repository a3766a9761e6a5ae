"""What the admin and operations slice adds to the application: its routes
(attest.server.admin, .ops), metrics, the per-host rate limit, each host's last decision.

One call from :func:`attest.server.app.create_app`; configured by :class:`OpsConfig`
(`attest serve --rate-limit`, passed to uvicorn's workers through the environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI

from attest.server import admin, ops
from attest.server.limits import DEFAULT_BURST, RateLimit, RateLimiter
from attest.server.metrics import Metrics

if TYPE_CHECKING:
    from attest.server.app import Service

ENV_RATE = "ATTEST_SERVE_RATE_LIMIT"
ENV_BURST = "ATTEST_SERVE_RATE_BURST"


@dataclass(frozen=True)
class OpsConfig:
    """``rate``: requests a second per host (None: no limit), with bursts of ``burst``;
    ``stale_after``: seconds without an acceptance before a host is stale."""

    rate: float | None = None
    burst: int = DEFAULT_BURST
    stale_after: int = admin.DEFAULT_STALE_AFTER

    def environment(self) -> dict[str, str]:
        return {ENV_RATE: "" if self.rate is None else repr(self.rate),
                ENV_BURST: str(self.burst)}

    @classmethod
    def from_environment(cls) -> OpsConfig:
        rate = os.environ.get(ENV_RATE) or None
        return cls(rate=None if rate is None else float(rate),
                   burst=int(os.environ.get(ENV_BURST) or DEFAULT_BURST))


def operate(app: FastAPI, service: Service, config: OpsConfig) -> None:
    metrics = Metrics()
    app.state.metrics = metrics
    service.verifier.track_hosts = True
    service.verifier.on_decided = metrics.decided
    admin.mount(app, service, stale_after=config.stale_after)
    ops.mount(app, service, metrics)
    if config.rate is not None:
        app.state.rate_limiter = RateLimiter(config.rate, config.burst)
        app.add_middleware(RateLimit, limiter=app.state.rate_limiter,
                           refused=metrics.rate_limited.inc)
    # Outermost: its latency includes the rate limit's refusals.
    app.add_middleware(ops.Instrumented, metrics=metrics)
