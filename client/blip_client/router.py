"""Route ``blip_vqa`` calls across named Triton fleets (``neuron``, ``gpu``, ...) with health-aware failover.

Every fleet serves the same model names, inputs and outputs, so a fleet is just a name, a URL and a weight.

- Choice: smooth weighted round robin (nginx's) over the backends that take traffic: exact shares, no bursts.
  Weights change live (``set_weight``, ``apply_config``); the next request already uses them.
- Health is each backend's own (``router_backend.Backend``): active probes, a real one-question inference through
  ``blip_vqa`` every ``probe_interval_s`` and at once after a failed call (``/v2/health/ready`` stays 200 when a
  Python stub has died and every inference fails), and a passive circuit breaker that a passing probe closes.
- Failover: a plain bounded loop. A request that fails on one backend for a server-side reason is tried on another,
  at most ``max_attempts`` backends; the caller sees an error only when none could answer. A caller's own
  mistake (``InvalidRequestError``) is never retried and never counts against a backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pybreaker
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from blip_client.async_client import AsyncBlipVqaClient
from blip_client.errors import (
    BlipVqaError,
    InvalidRequestError,
    NoBackendAvailableError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from blip_client.router_backend import Backend, BackendClient, BackendFailed, RoutedAnswer
from blip_client.router_config import BackendConfig, RouterConfig, checked_weight
from blip_client.router_metrics import RouterMetrics
from blip_client.wire import FrameInput, VqaResult
from blip_contract.logs import REQUEST_ID

log = logging.getLogger("blip_client.router")
# Spans of the router's attempts; a no-op until the process configures an OpenTelemetry SDK (the API tier does).
TRACER = trace.get_tracer("blip_client.router")


class Router:
    """Async router over named backends: create, ``await start()``, ``await ask(...)``, ``await close()``.

    Everything runs on one event loop, so choosing and reweighting need no locks.
    """

    def __init__(
        self,
        config: RouterConfig,
        metrics: RouterMetrics | None = None,
        connect: Callable[[str], BackendClient] = AsyncBlipVqaClient,
    ) -> None:
        self.config = config
        self.connect = connect  # url -> client; the edge a unit test replaces
        self.metrics = metrics or RouterMetrics()
        self.backends: dict[str, Backend] = {}
        self._started = False
        self._retiring: set[asyncio.Task[None]] = set()

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> Router:
        """Connect, probe every backend once, then keep probing each in the background on its own schedule.

        Connections are made here, not in ``__init__``: aiohttp binds them to the running event loop.
        """
        self.connect_all()
        await self.probe_all()
        self._started = True
        for backend in self.backends.values():
            backend.start_probing()
        return self

    def connect_all(self) -> None:
        """A client and a breaker for every configured backend, on the running event loop; no probing yet."""
        for backend_config in self.config.backends:
            self.backends[backend_config.name] = self._new_backend(backend_config)

    async def close(self) -> None:
        self._started = False
        for backend in self.backends.values():
            await backend.stop_probing()
            await backend.client.close()
        for task in list(self._retiring):
            task.cancel()

    # ---- configuration, live ---------------------------------------------------------------------------------

    def _new_backend(self, config: BackendConfig) -> Backend:
        return Backend.create(config, self.connect(config.url), self.config, self.metrics)

    def set_weight(self, name: str, weight: float) -> None:
        """Change one backend's share now; requests in flight are not touched."""
        if name not in self.backends:
            raise KeyError(f"no backend named {name!r}; known: {sorted(self.backends)}")
        weight = checked_weight(weight)
        self.backends[name].weight = weight
        self.metrics.weight.labels(name).set(weight)
        self._reset_rotation()
        log.info("backend %s: weight set to %g", name, weight)

    def apply_config(self, config: RouterConfig) -> dict[str, list[str]]:
        """Take a new configuration without a restart and without dropping a request.

        Kept backends (same name and URL) keep their connections and health and take the new weight; new ones
        are added and probed at once; removed ones (or a changed URL) stop taking traffic at once and are closed once their
        requests in flight have finished.
        """
        wanted = {b.name: b for b in config.backends}
        changes: dict[str, list[str]] = {"added": [], "removed": [], "reweighted": []}
        self.config = config
        for name, backend in list(self.backends.items()):
            new = wanted.get(name)
            if new is None or new.url != backend.config.url:
                self._retire(backend)
                changes["removed"].append(name)
        for name, new in wanted.items():
            if name not in self.backends:
                self.backends[name] = self._new_backend(new)
                self.backends[name].probe_now.set()  # probed at once, not after a first interval
                if self._started:
                    self.backends[name].start_probing()
                changes["added"].append(name)
            elif self.backends[name].weight != new.weight:
                self.backends[name].weight = float(new.weight)
                self.metrics.weight.labels(name).set(new.weight)
                changes["reweighted"].append(name)
            self.backends[name].config = new
            self.backends[name].apply_policy(config)
        self._reset_rotation()
        log.info("router config applied: %s", changes)
        return changes

    def _retire(self, backend: Backend) -> None:
        backend.retired = True
        del self.backends[backend.name]
        self.metrics.remove_backend(backend.name)

        async def close_when_idle() -> None:
            await backend.stop_probing()
            await backend.idle.wait()
            await backend.client.close()

        task = asyncio.create_task(close_when_idle())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _reset_rotation(self) -> None:
        for backend in self.backends.values():
            backend.current = 0.0

    # ---- routing -----------------------------------------------------------------------------------------------

    def choose(self, exclude: Sequence[Backend] = ()) -> Backend | None:
        """The next backend by smooth weighted round robin among healthy ones, else any that takes traffic."""
        open_to = [b for b in self.backends.values() if b not in exclude and b.takes_traffic()]
        candidates = [b for b in open_to if b.healthy] or open_to  # probes can lag: try before giving up
        if not candidates:
            return None
        total = sum(b.weight for b in candidates)
        for backend in candidates:
            backend.current += backend.weight
        chosen = max(candidates, key=lambda b: b.current)
        chosen.current -= total
        return chosen

    async def ask(
        self, image: FrameInput, questions: Sequence[str | bytes], *, scores_only: bool = False
    ) -> RoutedAnswer:
        """Scores and answers (scores only if asked) from the first backend that can give them;
        ``NoBackendAvailableError`` when none can. ``image``: the encoded frame, or a ``PixelSource`` that each
        backend's client resizes with that fleet's own settings (again on a failover to a fleet with others)."""
        started = time.perf_counter()
        tried: list[Backend] = []
        failures: list[str] = []
        while len(tried) < self.config.max_attempts:
            backend = self.choose(exclude=tried)
            if backend is None:
                break
            tried.append(backend)
            try:
                result = await self._call(backend, image, questions, scores_only, attempt=len(tried))
            except BackendFailed as error:
                failures.append(str(error))
                self.metrics.failovers.labels(backend.name).inc()
                trace.get_current_span().add_event("failover", {"blip.backend": backend.name, "blip.error": str(error)})
                continue
            return RoutedAnswer(result.scores, result.answers, backend.name, len(tried), time.perf_counter() - started)
        self.metrics.unanswered.inc()
        reason = "; ".join(failures) if failures else "every backend is down, drained or has its breaker open"
        raise NoBackendAvailableError(f"no backend could answer ({len(tried)} tried): {reason}")

    async def ask_backend(
        self, name: str, image: FrameInput, questions: Sequence[str | bytes], *, scores_only: bool = False
    ) -> RoutedAnswer:
        """One named backend's answer, with no choice and no failover (the canary's mirrors, which must reach the
        candidate or nothing); ``NoBackendAvailableError`` when it cannot answer."""
        backend = self.backends.get(name)
        if backend is None:
            raise NoBackendAvailableError(f"no backend named {name!r}")
        started = time.perf_counter()
        try:
            result = await self._call(backend, image, questions, scores_only)
        except BackendFailed as error:
            raise NoBackendAvailableError(str(error)) from None
        return RoutedAnswer(result.scores, result.answers, name, 1, time.perf_counter() - started)

    async def _call(
        self, backend: Backend, image: FrameInput, questions: Sequence[str | bytes], scores_only: bool, attempt: int = 1
    ) -> VqaResult:
        """One attempt at one backend, as a span of its own (the fleet's spans are its children: its client sends
        the span's ``traceparent``); ``BackendFailed`` where the router should fail over."""
        attributes = {"blip.backend": backend.name, "blip.attempt": attempt, "blip.scores_only": scores_only}
        # The span records a raised error and its status itself; the outcome says which kind it was.
        with TRACER.start_as_current_span("router.attempt", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                result = await self._attempt(backend, image, questions, scores_only)
            except (BackendFailed, InvalidRequestError) as error:
                span.set_attribute("blip.outcome", "failed" if isinstance(error, BackendFailed) else "invalid_request")
                raise
            span.set_attribute("blip.outcome", "ok")
            return result

    async def _attempt(
        self, backend: Backend, image: FrameInput, questions: Sequence[str | bytes], scores_only: bool
    ) -> VqaResult:
        name = backend.name
        self.metrics.requests.labels(name).inc()
        self.metrics.in_flight.labels(name).inc()
        backend.in_flight += 1
        backend.idle.clear()
        started = time.perf_counter()
        try:
            with backend.breaker.calling():
                result = await backend.client.infer(
                    image,
                    questions,
                    timeout_s=self.config.request_timeout_s,
                    scores_only=scores_only,
                    request_id=REQUEST_ID.get(),  # the API tier's id of this frame, into Triton's logs
                )
        except InvalidRequestError:
            self.metrics.errors.labels(name, "invalid_request").inc()
            raise
        except pybreaker.CircuitBreakerError as error:
            kind, message = "breaker_open", f"circuit breaker open ({error})"
        except ServerUnavailableError as error:
            kind, message = ("timeout" if isinstance(error, ServerTimeoutError) else "unavailable"), str(error)
        except BlipVqaError as error:  # ServerError and every other error of a fleet's own
            kind, message = "server_error", str(error)
        else:
            if not backend.retired:  # a removed backend's series are gone; do not bring them back
                self.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return result
        finally:
            backend.in_flight -= 1
            if backend.in_flight == 0:
                backend.idle.set()
            if not backend.retired:
                self.metrics.in_flight.labels(name).dec()
        if not backend.retired:  # a removed backend's series are gone; do not bring them back
            self.metrics.errors.labels(name, kind).inc()
        backend.probe_now.set()
        log.warning("backend %s failed (%s): %s", name, kind, message)
        raise BackendFailed(f"{name}: {kind}: {message}")

    # ---- health: each backend probes itself; the router starts all at once --------------------------------------

    async def probe_all(self) -> None:
        await asyncio.gather(*(b.probe() for b in list(self.backends.values())))

    def status(self) -> dict[str, Any]:
        return {name: backend.status() for name, backend in self.backends.items()}
