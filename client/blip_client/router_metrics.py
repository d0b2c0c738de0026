"""Prometheus metrics of the router, one series per backend, in a registry of the router's own.

An own registry (not prometheus_client's global one) lets several routers live in one process, as tests and
blue/green reloads need; the API tier exposes it at ``GET /metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
ERROR_KINDS = ("unavailable", "timeout", "server_error", "breaker_open", "invalid_request")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("blip_router_requests", "Calls sent to a backend", ["backend"], registry=r)
        self.errors = Counter(
            "blip_router_errors", f"Failed calls by kind ({', '.join(ERROR_KINDS)})", ["backend", "kind"], registry=r
        )
        self.latency = Histogram(
            "blip_router_request_seconds", "Latency of answered calls", ["backend"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("blip_router_in_flight", "Calls now waiting on a backend", ["backend"], registry=r)
        self.breaker_state = Gauge(
            "blip_router_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["backend"], registry=r
        )
        self.weight = Gauge("blip_router_weight", "Routing weight (0 drains the backend)", ["backend"], registry=r)
        self.healthy = Gauge("blip_router_healthy", "1 while active probes pass", ["backend"], registry=r)
        self.probes = Counter("blip_router_probes", "Active health probes by result", ["backend", "result"], registry=r)
        self.failovers = Counter(
            "blip_router_failovers", "Calls retried on another backend after this one failed", ["backend"], registry=r
        )
        self.unanswered = Counter("blip_router_unanswered", "Requests no backend could answer", registry=r)

    def add_backend(self, name: str, weight: float) -> None:
        """Create every series of a backend at zero, so dashboards see it before its first request."""
        self.requests.labels(name)
        for kind in ERROR_KINDS:
            self.errors.labels(name, kind)
        for result in ("ok", "failed"):
            self.probes.labels(name, result)
        self.latency.labels(name)
        self.in_flight.labels(name).set(0)
        self.breaker_state.labels(name).set(0)
        self.weight.labels(name).set(weight)
        self.healthy.labels(name).set(1)
        self.failovers.labels(name)

    def remove_backend(self, name: str) -> None:
        for metric in (self.requests, self.latency, self.in_flight, self.breaker_state, self.weight, self.healthy):
            metric.remove(name)
        self.failovers.remove(name)
        for kind in ERROR_KINDS:
            self.errors.remove(name, kind)
        for result in ("ok", "failed"):
            self.probes.remove(name, result)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
