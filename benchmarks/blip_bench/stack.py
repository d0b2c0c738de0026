"""The serving stack as separate processes on loopback, started the way `make serve` and `make api` start them.

``Fleet`` is one self-healing fleet (``python -m blip_serving.serve``: the supervisor, its tritonserver and
the Python stubs); ``ApiProcess`` is the API tier (``python -m blip_api``). The soak and the integration tests
drive these, kill parts of them, and read their processes' memory, descriptors and threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from blip_bench.frames import ROOT
from blip_client.client import BlipVqaClient
from blip_client.probe import probe_url
from blip_serving.triton.process import free_port, stop_process, stub_instance

TOKEN, ADMIN_TOKEN = "camera-token", "admin-token"
AUTH, ADMIN = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class ApiProcess:
    """``python -m blip_api`` on a free loopback port with the test tokens, as ``make api`` runs it."""

    def __init__(
        self, config: Path, log: Path | None = None, db_url: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        """``db_url``: the event store (default: SQLite beside the config, never in the checkout); ``env``: more
        environment (``BLIP_LOG_JSON``, ``OTEL_*``)."""
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or config.with_suffix(".log")
        self.db_url = db_url or f"sqlite:///{config.parent / 'events.sqlite3'}"
        env = dict(
            os.environ, BLIP_API_TOKEN=TOKEN, BLIP_API_ADMIN_TOKEN=ADMIN_TOKEN, BLIP_DB_URL=self.db_url, **(env or {})
        )
        command = [sys.executable, "-m", "blip_api", "--config", str(config), "--port", str(self.port)]
        with self.log.open("a") as sink:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API tier exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"API tier not up:\n{self.log.read_text()[-3000:]}")

    def backends(self) -> dict:
        return httpx.get(f"{self.url}/admin/backends", headers=ADMIN, timeout=5).json()

    def stop(self) -> None:
        stop_process(self.process, 20)


def write_api_config(
    path: Path,
    urls: dict[str, str],
    weights: dict[str, float] | None = None,
    probe_interval_s: float = 0.5,
    api: dict[str, int] | None = None,
    request_timeout_s: float = 20.0,
    sections: dict[str, dict[str, object]] | None = None,
) -> Path:
    """An API tier config routing to ``urls`` (fleet name -> Triton HTTP endpoint); ``sections``: more tables
    (``{"webhooks": {"allow_insecure": True}}``)."""
    lines = [
        "[router]",
        f"probe_interval_s = {probe_interval_s}",
        "probe_timeout_s = 3.0",
        f"request_timeout_s = {request_timeout_s}",
        "breaker_reset_s = 5.0",
    ]
    for name, url in urls.items():
        lines += [f"[backends.{name}]", f'url = "{url}"', f"weight = {(weights or {}).get(name, 1)}"]
    if api:
        lines += ["[api]", *(f"{key} = {value}" for key, value in api.items())]
    for section, values in (sections or {}).items():
        lines += [f"[{section}]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Fleet:
    """One fleet as `make serve` runs it: the supervisor around tritonserver, healing itself every second."""

    name: str
    layout: str
    repository: Path
    log_dir: Path
    heal_interval_s: float = 1.0
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    supervisor_port: int = field(default_factory=free_port)
    version_file: Path | None = None  # --model-version-file: the version it serves, followed live
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> Fleet:
        """Start the supervisor (a container runtime starting the fleet's container); returns at once."""
        self.starts += 1
        command = [
            sys.executable,
            "-m",
            "blip_serving.serve",
            "--target",
            "cpu",
            "--layout",
            self.layout,
            "--repository",
            str(self.repository),
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--heal-interval-s",
            str(self.heal_interval_s),
            "--supervisor-metrics-port",
            str(self.supervisor_port),
            *(["--model-version-file", str(self.version_file)] if self.version_file else []),
        ]
        log = self.log_dir / f"fleet-{self.name}-{self.starts}.log"
        with log.open("w") as sink:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        return self

    def served_version(self) -> int | None:
        """The model version the supervisor reports serving (its ``blip_supervisor_model_version``), if it answers."""
        try:
            exposition = httpx.get(f"http://127.0.0.1:{self.supervisor_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        for family in text_string_to_metric_families(exposition):
            if family.name == "blip_supervisor_model_version":
                return next((int(sample.value) for sample in family.samples), None)
        return None

    def answers(self, timeout_s: float = 5.0) -> bool:
        """One real scores-only inference, as `blip-client probe` sends."""
        return probe_url(self.http_url, timeout_s, lambda url, t: BlipVqaClient(url, timeout_s=t)).ok

    def wait_answering(self, timeout_s: float = 180.0, step_s: float = 0.2) -> float:
        """Seconds until the fleet answered; raises with the fleet's log if it did not in time."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"fleet {self.name} exited:\n{self.recent_log()}")
            if self.answers():
                return time.monotonic() - started
            time.sleep(step_s)
        raise TimeoutError(f"fleet {self.name} not answering after {timeout_s:.0f} s:\n{self.recent_log()}")

    def recent_log(self, chars: int = 3000) -> str:
        logs = sorted(self.log_dir.glob(f"fleet-{self.name}-*.log"))
        return logs[-1].read_text()[-chars:] if logs else ""

    def processes(self) -> dict[str, psutil.Process]:
        """Role -> process: ``supervisor``, ``tritonserver`` and ``stub:<instance>`` for each stub."""
        if self.process is None or self.process.poll() is not None:
            return {}
        roles = {}
        with contextlib.suppress(psutil.Error):
            supervisor = psutil.Process(self.process.pid)
            roles["supervisor"] = supervisor
            for child in supervisor.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    args = child.cmdline()
                    if args and args[0].endswith("tritonserver"):
                        roles["tritonserver"] = child
                    elif (instance := stub_instance(args)) is not None:
                        roles[f"stub:{instance}"] = child
        return roles

    def kill_stub(self, instance: str) -> int:
        """SIGKILL one Python stub (``text_decoder_0_0``); its pid."""
        stub = self.processes()[f"stub:{instance}"]
        stub.send_signal(signal.SIGKILL)
        return stub.pid

    def kill_all(self) -> None:
        """SIGKILL the supervisor, tritonserver and every stub at once: the container dying (OOM kill, node loss)."""
        everything = list(self.processes().values())
        for process in everything:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(everything, timeout=10)
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 60)
