"""The service's Prometheus metrics (``GET /metrics``), on prometheus_client.

One registry per application (a test's apps don't share counters), per process: under
``attest serve --workers N`` each worker answers with its own counts, and Prometheus
sums the workers' series (scrape each, or aggregate with ``sum without (instance)``).
Decisions are counted where they are committed (Verifier.on_decided), so a batch's
members count one by one; latency is measured around the HTTP handler.

Labels take only values from fixed sets (reason codes, routes the app declares), never
a client's text: a client can't grow the series without bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from attest.decision import Decision

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: a verification takes ~1-20 ms here; the top buckets catch a stalled store.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "attest_decisions", "Decisions committed, by result.", ["result"],
            registry=self.registry)
        self.denial_reasons = Counter(
            "attest_denial_reasons", "Reasons given in denials (a denial may give several).",
            ["reason"], registry=self.registry)
        self.latency = Histogram(
            "attest_request_seconds", "Time to answer a request, by route.", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.enrollments = Counter(
            "attest_enrollments", "Enrollments, by result.", ["result"], registry=self.registry)
        self.store_errors = Counter(
            "attest_store_errors", "Requests answered 503 because the store was out of reach.",
            registry=self.registry)
        self.rate_limited = Counter(
            "attest_rate_limited", "Requests refused 429 by the per-host rate limit.",
            registry=self.registry)
        for result in ("accepted", "denied"):
            self.decisions.labels(result)
            self.enrollments.labels(result)

    def decided(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            self.decisions.labels("accepted" if decision.accepted else "denied").inc()
            for reason in set(decision.reasons):
                self.denial_reasons.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
