"""A fleet as the router sees it: its client, circuit breaker, health counts, weight and place in the rotation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pybreaker

from blip_client.probe import ProbeResult
from blip_client.router_config import BackendConfig
from blip_client.router_metrics import BREAKER_STATES, RouterMetrics
from blip_client.wire import VqaResult

log = logging.getLogger("blip_client.router")


class BackendClient(Protocol):
    """What the router needs of a fleet's client; ``AsyncBlipVqaClient`` in production, a stand-in in unit tests."""

    closed: bool

    async def infer(
        self,
        image: bytes,
        questions: Sequence[str | bytes],
        *,
        timeout_s: float,
        scores_only: bool = False,
        request_id: str | None = None,
    ) -> VqaResult: ...

    async def close(self) -> None: ...


@dataclass
class RoutedAnswer:
    scores: list[float]
    answers: list[str] | None  # None for a scores-only request
    backend: str
    attempts: int
    seconds: float


class BackendFailed(Exception):
    """One backend could not answer for a server-side reason: fail over."""


class BreakerMetrics(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: RouterMetrics, name: str) -> None:
        self.metrics, self.name = metrics, name

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.metrics.breaker_state.labels(self.name).set(BREAKER_STATES[new_state.name])
        log.warning("backend %s: circuit breaker %s -> %s", self.name, getattr(old_state, "name", None), new_state.name)


@dataclass(eq=False)
class Backend:
    """A named fleet: its client, its breaker, what the probes last saw, and its routing state."""

    config: BackendConfig
    client: BackendClient
    breaker: pybreaker.CircuitBreaker
    storage: pybreaker.CircuitMemoryStorage
    weight: float
    healthy: bool = True
    good_probes: int = 0
    bad_probes: int = 0
    last_probe: ProbeResult | None = None
    in_flight: int = 0
    retired: bool = False
    current: float = 0.0  # smooth weighted round robin
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    probe_task: asyncio.Task[None] | None = None
    probe_now: asyncio.Event = field(default_factory=asyncio.Event)  # a failed call asks for a probe at once

    @property
    def name(self) -> str:
        return self.config.name

    def breaker_admits(self) -> bool:
        """Closed or half-open, or open long enough that the next call is the breaker's trial call."""
        if self.breaker.current_state != pybreaker.STATE_OPEN:
            return True
        opened = self.storage.opened_at
        return opened is None or datetime.now(UTC) >= opened + timedelta(seconds=self.breaker.reset_timeout)

    def takes_traffic(self) -> bool:
        return not self.retired and self.weight > 0 and self.breaker_admits()

    def status(self) -> dict[str, Any]:
        probe = self.last_probe
        return {
            "url": self.config.url,
            "weight": self.weight,
            "healthy": self.healthy,
            "breaker": self.breaker.current_state,
            "in_flight": self.in_flight,
            "last_probe": None
            if probe is None
            else {"ok": probe.ok, "ms": round(probe.seconds * 1000, 1), "age_s": round(time.monotonic() - probe.at, 2)}
            | ({"error": probe.error} if probe.error else {}),
        }
