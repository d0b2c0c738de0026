"""Self-healing: what ``make serve`` and the fleet containers run around tritonserver.

Triton 2.51 never restarts a dead Python stub, and ``/v2/health/ready`` stays 200 while every inference fails. The
supervisor watches its own Triton every ``interval_s``:

- a stub process that exited, or a probe answered "Stub process '...' is not healthy": its model is unloaded, then loaded again through Triton's model-repository API
  (unload first, so that on Neuron the old process has released its NeuronCores). Only that model's stubs start
  again; the others keep serving. If the reload fails, or the model still does not answer, Triton is restarted;
  also after ``reloads_per_restart`` reloads, since each leaves threads behind in tritonserver.
- tritonserver itself exiting, or ``failures`` failed probes in a row (a real one-question scores-only inference
  over loopback, which also catches a stub that hangs): Triton is restarted on the same ports. The whole process
  group is stopped (every stub with it, so every NeuronCore is released before a new process reserves one), the
  stubs' shared-memory regions are removed, and the same command starts again.

The model-repository API is open only to requests carrying the server's secret header (Triton's restricted-API
feature, HTTP and gRPC): the supervisor holds the secret, every other client of the ports gets 403. A caller's
400 never counts: the probe sends a known-good image, and only a server-side failure is a failed probe.
Recoveries are counted in ``blip_supervisor_recoveries_total`` (by reason and action) on the supervisor's own
metrics port.

Model versions: with ``version_file`` (``blip-serve --model-version-file``, in a cluster a ConfigMap's key), every
round also reads the version the file names and, when it is not the one served, switches to it live
(``TritonServer.switch_version``: no request refused). Rollback is the same with the old version. A version that
cannot be served is refused in the log, once per value, and the served one keeps serving. The served version is
``blip_supervisor_model_version``; switches are ``blip_supervisor_version_switches_total`` by outcome.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from blip_client.client import BlipVqaClient
from blip_client.probe import probe_url
from blip_serving.errors import TritonProcessError
from blip_serving.instance_names import model_of
from blip_serving.triton.process import TritonServer
from blip_serving.versions import VersionError, read_version_file

logger = logging.getLogger("blip_serving.supervisor")

# Triton's error for a request that reached a dead stub: "Stub process 'text_decoder_0_0' is not healthy."
UNHEALTHY_STUB = re.compile(r"Stub process '([^']+)' is not healthy")


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
    log: Callable[[str], None] = logger.info
    # url, timeout -> a client for the probe; the edge a unit test replaces with a stand-in server.
    connect: Callable[[str, float], BlipVqaClient] = lambda url, timeout_s: BlipVqaClient(url, timeout_s=timeout_s)
    # Triton 2.51 never finishes unloading an instance whose stub died: each such reload leaves its threads behind
    # in tritonserver (measured: 35 threads and 0.8 MiB per reload, every time). After this many reloads, the next
    # recovery restarts Triton instead, which frees them.
    reloads_per_restart: int = 3
    # The file naming the model version to serve (a ConfigMap key in a cluster); None: the version never changes.
    version_file: Path | None = None
    recoveries: list[Recovery] = field(default_factory=list)
    _reloads: int = 0
    _failed: int = 0
    _stubs: set[str] = field(default_factory=set)
    _refused: str | None = None  # the last version-file value refused, so that it is logged once

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.recovered = Counter(
            "blip_supervisor_recoveries",
            "Recoveries by the supervisor, by reason and action (reload: one model; restart: Triton)",
            ["reason", "action"],
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
        self.version = Gauge(
            "blip_supervisor_model_version",
            "The model version served (0: artifacts outside any version store)",
            registry=self.registry,
        )
        self.switches = Counter(
            "blip_supervisor_version_switches",
            "Live model-version switches, by outcome (switched, refused, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self._show_version()

    def _show_version(self) -> None:
        served = self.server.served
        self.version.set((served.version or 0) if served is not None else 0)

    def follow_version(self) -> None:
        """Switch to the version ``version_file`` names when it is not the one served."""
        if self.version_file is None:
            return
        try:
            wanted = read_version_file(self.version_file)
        except VersionError as error:
            self._refuse(str(error), str(error))
            return
        served = self.server.served
        if wanted is None or (served is not None and served.version == wanted):
            return
        try:
            self.server.switch_version(wanted)
        except VersionError as error:
            self._refuse(
                f"version {wanted}", f"supervisor: model version {wanted} refused, keeping what is served: {error}"
            )
            return
        except TritonProcessError as error:
            self.switches.labels("failed").inc()
            self.log(f"supervisor: switching to model version {wanted} failed, the previous version serves: {error}")
            return
        self._refused = None
        self.switches.labels("switched").inc()
        self._show_version()
        self.log(f"supervisor: serving model version {wanted}")

    def _refuse(self, value: str, message: str) -> None:
        if self._refused != value:
            self._refused = value
            self.switches.labels("refused").inc()
            self.log(message)

    def probe(self) -> str | None:
        """None when the model answered; else why not. A refusal of the probe's own request is not a failure."""
        result = probe_url(self.server.http_url, self.probe_timeout_s, self.connect)
        if result.note:
            self.log(f"supervisor: {result.note}; not a server failure")
        return None if result.ok else result.error

    def check(self) -> Recovery | None:
        """One round: heal if tritonserver exited or the probe failed ``failures`` times in a row."""
        process = self.server.process
        if process is not None and process.poll() is not None:
            return self.heal(f"tritonserver exited with {process.returncode}", "server_exited")
        # A stub that exited is gone for good (Triton 2.51 never restarts one): no need to wait for probes.
        running = set(self.server.stub_processes())
        if self._stubs - running:
            return self.reload(self._stubs - running)
        reason = self.probe()
        self.probes.labels("ok" if reason is None else "failed").inc()
        if reason is None:
            self._failed = 0
            return None
        # Triton names the dead stub in its answer; that is as sure as seeing the process gone (which a stub that
        # died while the supervisor was starting, or one whose process lingers, can hide from the check above).
        if dead := UNHEALTHY_STUB.search(reason):
            self.log(f"supervisor: Triton reports stub {dead.group(1)} unhealthy")
            return self.reload({dead.group(1)})
        self._failed += 1
        self.log(f"supervisor: probe failed ({self._failed}/{self.failures}): {reason}")
        if self._failed < self.failures:
            return None
        return self.heal(reason, "probe_failed")

    def reload(self, instances: set[str]) -> Recovery:
        """Reload the models whose stubs exited; restart Triton if that cannot bring them back."""
        reason = f"stub process(es) {sorted(instances)} exited"
        if self.server.model_control_secret is None:
            return self.heal(reason, "stub_exited", grace_s=0.0)
        if self._reloads >= self.reloads_per_restart:
            self.log(f"supervisor: {self._reloads} reloads since Triton started; restarting it to free what they left")
            return self.heal(reason, "stub_exited", grace_s=0.0)
        started = time.monotonic()
        models = sorted({model_of(instance) for instance in instances})
        self.log(f"supervisor: reloading {', '.join(models)}: {reason}")
        try:
            for model in models:
                self.server.model_control.reload(model)
        except TritonProcessError as error:
            self.log(f"supervisor: reload failed, restarting Triton: {error}")
            return self.heal(reason, "stub_exited", grace_s=0.0)
        for _ in range(3):  # an ensemble turns ready a moment after its component
            if (failure := self.probe()) is None:
                self._reloads += 1
                return self.recovered_by(reason, "stub_exited", "reload", started)
            time.sleep(0.5)
        self.log(f"supervisor: reloaded, but the model does not answer ({failure}); restarting Triton")
        return self.heal(reason, "stub_exited", grace_s=0.0)

    def recovered_by(self, reason: str, kind: str, action: str, started: float) -> Recovery:
        self._stubs = set(self.server.ready_stubs) | set(self.server.stub_processes())
        recovery = Recovery(reason, time.monotonic() - started)
        self.recoveries.append(recovery)
        self.recovered.labels(kind, action).inc()
        self.last_heal.set(recovery.seconds)
        self._failed = 0
        what = "Triton ready again" if action == "restart" else "model(s) answering again"
        self.log(f"supervisor: {what} {recovery.seconds:.1f} s after the decision to {action}")
        return recovery

    def heal(self, reason: str, kind: str, grace_s: float = 3.0) -> Recovery:
        """Restart Triton; ``grace_s`` 0 where a clean stop cannot come (a dead stub makes Triton wait 30 s)."""
        started = time.monotonic()
        self.log(f"supervisor: restarting Triton: {reason}")
        self.server.restart(grace_s=grace_s)
        self._reloads = 0
        return self.recovered_by(reason, kind, "restart", started)

    def run(self, stop: threading.Event) -> None:
        """Check every ``interval_s`` until ``stop`` is set; a restart that fails is tried again next round."""
        self._stubs = set(self.server.ready_stubs)  # as they were when Triton turned ready
        self.log(f"supervisor: watching stubs {sorted(self._stubs)} every {self.interval_s:g} s")
        while not stop.wait(self.interval_s):
            try:
                self.check()
                self.follow_version()
            except TritonProcessError as error:
                self.log(f"supervisor: restart failed, trying again in {self.interval_s:g} s: {error}")
