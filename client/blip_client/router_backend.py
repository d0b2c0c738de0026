"""A fleet as the router sees it: its client, circuit breaker, its own health and probe loop, weight and place in
the rotation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pybreaker

from blip_client.errors import InvalidRequestError
from blip_client.probe import ProbeResult, probe_async
from blip_client.router_config import BackendConfig, RouterConfig
from blip_client.router_metrics import BREAKER_STATES, RouterMetrics
from blip_client.wire import FrameInput, VqaResult
from blip_contract.pixels import PixelSettings

log = logging.getLogger("blip_client.router")


class BackendClient(Protocol):
    """What the router needs of a fleet's client; ``AsyncBlipVqaClient`` in production, a stand-in in unit tests."""

    closed: bool

    async def read_pixel_settings(self, timeout_s: float) -> PixelSettings: ...

    async def infer(
        self,
        image: FrameInput,
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
    """A named fleet: its client, its breaker, its health and probe loop, and its routing state.

    Health is the backend's own, as TGI's ``Health`` is its shard's: a real one-question inference through
    ``blip_vqa`` every ``probe_interval_s`` (and at once after a failed call), counted into healthy/unhealthy by the
    policy's thresholds; a passing probe closes an open breaker. The router only reads ``healthy``.
    """

    config: BackendConfig
    client: BackendClient
    policy: RouterConfig  # thresholds and timings; the router hands a new one on reload
    metrics: RouterMetrics
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

    @classmethod
    def create(
        cls, config: BackendConfig, client: BackendClient, policy: RouterConfig, metrics: RouterMetrics
    ) -> Backend:
        """A backend with a closed breaker, healthy until its probes say otherwise, its series in ``metrics``."""
        storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        breaker = pybreaker.CircuitBreaker(
            fail_max=policy.breaker_fail_max,
            reset_timeout=policy.breaker_reset_s,
            exclude=[InvalidRequestError],
            listeners=[BreakerMetrics(metrics, config.name)],
            state_storage=storage,
            name=config.name,
            throw_new_error_on_trip=False,
        )
        backend = cls(config, client, policy, metrics, breaker, storage, float(config.weight))
        backend.idle.set()
        metrics.add_backend(config.name, backend.weight)
        return backend

    @property
    def name(self) -> str:
        return self.config.name

    def apply_policy(self, policy: RouterConfig) -> None:
        self.policy = policy
        self.breaker.fail_max = policy.breaker_fail_max
        self.breaker.reset_timeout = policy.breaker_reset_s

    def breaker_admits(self) -> bool:
        """Closed or half-open, or open long enough that the next call is the breaker's trial call."""
        if self.breaker.current_state != pybreaker.STATE_OPEN:
            return True
        opened = self.storage.opened_at
        return opened is None or datetime.now(UTC) >= opened + timedelta(seconds=self.breaker.reset_timeout)

    def takes_traffic(self) -> bool:
        return not self.retired and self.weight > 0 and self.breaker_admits()

    # ---- health ------------------------------------------------------------------------------------------------

    async def probe(self) -> ProbeResult:
        """One real inference through ``blip_vqa``; it updates health, and a pass closes an open breaker."""
        result = await probe_async(self.client, self.policy.probe_timeout_s)
        self.last_probe = result
        if self.retired:
            return result
        self.metrics.probes.labels(self.name, "ok" if result.ok else "failed").inc()
        if result.ok:
            self.good_probes, self.bad_probes = self.good_probes + 1, 0
            if not self.healthy and self.good_probes >= self.policy.healthy_after:
                self.healthy = True
                log.warning("backend %s: healthy again", self.name)
            if self.healthy and self.breaker.current_state != pybreaker.STATE_CLOSED:
                self.breaker.close()
        else:
            self.bad_probes, self.good_probes = self.bad_probes + 1, 0
            if self.healthy and self.bad_probes >= self.policy.unhealthy_after:
                self.healthy = False
                log.warning("backend %s: unhealthy (%s)", self.name, result.error)
        self.metrics.healthy.labels(self.name).set(1 if self.healthy else 0)
        return result

    def start_probing(self) -> None:
        if self.probe_task is None:
            self.probe_task = asyncio.create_task(self._probe_loop(), name=f"probe-{self.name}")

    async def stop_probing(self) -> None:
        if self.probe_task is not None:
            self.probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.probe_task
            self.probe_task = None

    async def _probe_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.probe_now.wait(), self.policy.probe_interval_s)
            self.probe_now.clear()
            try:
                await self.probe()
            except Exception:  # a probe bug must never stop the probing
                log.exception("health probe of %s failed", self.name)

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
