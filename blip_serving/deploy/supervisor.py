"""Self-healing: what ``make serve`` and the fleet containers run around tritonserver.

Triton 2.51 never restarts a dead Python stub, and ``/v2/health/ready`` stays 200 while every inference fails. The
supervisor watches its own Triton every ``interval_s``: a stub process that exited, tritonserver itself exiting, or
``failures`` failed probes in a row (a real one-question scores-only inference over loopback, which also catches a
stub that hangs) make it restart Triton on the same ports: the
whole process group is stopped (every stub with it, so on Neuron each NeuronCore is released before a new process
reserves it), the stubs' shared-memory regions are removed, and the same command starts again.

Restarting the server, rather than unloading and loading one model through Triton's model-control API, keeps that
API closed: explicit model control would let every client of the HTTP and gRPC ports load and unload models. A
caller's 400 never counts: the probe sends a known-good image, and only a server-side failure is a failed probe.
Recoveries are counted in ``blip_supervisor_recoveries_total`` on the supervisor's own metrics port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blip_serving.deploy.server import ServerError, TritonServer


@dataclass
class Recovery:
    reason: str
    seconds: float  # from the decision to heal to Triton ready again


@dataclass
class Supervisor:
    server: TritonServer
    interval_s: float = 2.0
    failures: int = 2
    probe_timeout_s: float = 5.0
    log: Callable[[str], None] = print
    recoveries: list[Recovery] = field(default_factory=list)
    _failed: int = 0
    _stubs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.recovered = Counter(
            "blip_supervisor_recoveries",
            "Triton restarts by the supervisor, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.probes = Counter(
            "blip_supervisor_probes", "Health probes, by outcome", ["outcome"], registry=self.registry
        )
        self.last_heal = Gauge(
            "blip_supervisor_last_recovery_seconds",
            "Seconds the last recovery took until ready",
            registry=self.registry,
        )

    def probe(self) -> str | None:
        """None when the model answered; else why not. A refusal of the probe's own request is not a failure."""
        from blip_client.client import BlipVqaClient, InvalidRequestError
        from blip_client.errors import BlipVqaError
        from blip_client.wire import PROBE_IMAGE, PROBE_QUESTIONS

        try:
            with BlipVqaClient(self.server.http_url, timeout_s=self.probe_timeout_s) as client:
                client.scores(PROBE_IMAGE, PROBE_QUESTIONS)
        except InvalidRequestError as error:
            self.log(f"supervisor: the probe itself was refused ({error}); not a server failure")
            return None
        except (BlipVqaError, OSError) as error:
            return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return None

    def check(self) -> Recovery | None:
        """One round: heal if tritonserver exited or the probe failed ``failures`` times in a row."""
        process = self.server.process
        if process is not None and process.poll() is not None:
            return self.heal(f"tritonserver exited with {process.returncode}", "server_exited")
        # A stub that exited is gone for good (Triton 2.51 never restarts one): no need to wait for probes.
        running = set(self.server.stub_processes())
        if self._stubs - running:
            return self.heal(f"stub process(es) {sorted(self._stubs - running)} exited", "stub_exited", grace_s=0.0)
        reason = self.probe()
        self.probes.labels("ok" if reason is None else "failed").inc()
        if reason is None:
            self._failed = 0
            return None
        self._failed += 1
        self.log(f"supervisor: probe failed ({self._failed}/{self.failures}): {reason}")
        if self._failed < self.failures:
            return None
        return self.heal(reason, "probe_failed")

    def heal(self, reason: str, kind: str, grace_s: float = 3.0) -> Recovery:
        """Restart Triton; ``grace_s`` 0 where a clean stop cannot come (a dead stub makes Triton wait 30 s)."""
        started = time.monotonic()
        self.log(f"supervisor: restarting Triton: {reason}")
        self.server.restart(grace_s=grace_s)
        self._stubs = set(self.server.stub_processes())  # ready: every instance's stub is up
        recovery = Recovery(reason, time.monotonic() - started)
        self.recoveries.append(recovery)
        self.recovered.labels(kind).inc()
        self.last_heal.set(recovery.seconds)
        self._failed = 0
        self.log(f"supervisor: Triton ready again {recovery.seconds:.1f} s after the decision to restart")
        return recovery

    def run(self, stop: threading.Event) -> None:
        """Check every ``interval_s`` until ``stop`` is set; a restart that fails is tried again next round."""
        self._stubs = set(self.server.stub_processes())  # the server is ready: every instance's stub is up
        while not stop.wait(self.interval_s):
            try:
                self.check()
            except ServerError as error:
                self.log(f"supervisor: restart failed, trying again in {self.interval_s:g} s: {error}")
