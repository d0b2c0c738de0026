"""A tritonserver process serving one repository for one target: start, wait until ready, stop, restart, kill.

``TritonServer`` starts it with ``--model-config-name`` of the layout and target, waits until every model is ready,
and stops it with SIGTERM (SIGKILL after a grace period). Its stubs are listed from /proc for the supervisor.
``make serve``, the tests, the benchmarks and the images use this class.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import psutil

from blip_serving.deployment import DEFAULT_LAYOUT
from blip_serving.errors import TritonProcessError
from blip_serving.layouts import get_layout
from blip_serving.model_config import CONFIGS_DIR
from blip_serving.targets import get_target
from blip_serving.triton.control import ModelControl, is_ready, restricted_api_flags
from blip_serving.triton.environment import server_environment
from blip_serving.triton.install import check_stub_numpy, prepare_backend_directory, stub_python, triton_installation
from blip_serving.triton.model_versions import ServedVersion, check_compatible, choose, write_view
from blip_serving.triton.shm import remove_stale_shm_regions, stub_regions, unlink_regions
from blip_serving.triton.tracing import trace_flags

log = logging.getLogger(__name__)
triton_log = logging.getLogger("tritonserver")


STUB_PROGRAM = "triton_python_backend_stub"


def stub_instance(args: list[str]) -> str | None:
    """The model instance a Python-backend stub serves (``text_decoder_0_0``), from its command line, which ends
    ``... <shm size> <instance name> <kind>`` (a trailing empty field from /proc's NUL separators aside).

    None for any other process, and for a stub whose command line is not whole: /proc shows a process that is
    still being started, or is exiting, with its program alone, and a sampler that lists the tree then must skip
    it rather than fail (the soak's sampler once read ``[stub]`` mid-restart)."""
    fields = [arg for arg in args if arg]
    if len(fields) < 4 or STUB_PROGRAM not in fields[0]:
        return None
    return fields[-2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``: the helper processes the demo, the benchmarks and the tests start
    (``blip-api``, brokers) stop this way. Triton itself stops with ``TritonServer.stop`` (its process group)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TritonServer:
    """A tritonserver process serving one repository for one target (on 127.0.0.1 unless ``listen_address`` says)."""

    echo_log = False  # `make serve` prints Triton's log; tests keep only a tail for error messages

    def __init__(
        self,
        repository: Path,
        target: str = "cpu",
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_verbose: int = 0,
        backend_root: Path | None = None,
        listen_address: str = "127.0.0.1",
        layout: str = DEFAULT_LAYOUT,
        model_control: bool = False,
        env: Mapping[str, str] | None = None,
        model_version: int | None = None,
    ) -> None:
        """``env``: the environment tritonserver starts from (default: this process's); the OpenMP policy and the
        library paths are added to it. ``model_version``: the version of the target's artifacts to serve (default:
        the one the repository's configs name, the last build's)."""
        self.target_type = get_target(target)  # the class; an unknown name fails here, in one line
        self.layout = get_layout(layout)
        # Explicit model control, restricted to the holder of this secret (kept in this process's memory; the
        # tritonserver command line carries it, readable only by whoever may already signal the server).
        self.model_control_secret = secrets.token_urlsafe(24) if model_control else None
        self.repository = repository.resolve()
        self.target_name = target
        self.view: Path | None = None
        self.requested_version = model_version
        self.served: ServedVersion | None = None  # chosen with the view, kept across restarts and switches
        self.stub_python_checked = False
        self.listen_address = listen_address
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log_verbose = log_verbose
        self.env = dict(os.environ if env is None else env)
        self.backend_root = backend_root or Path(tempfile.gettempdir()) / f"blip-serving-backends-{os.getuid()}"
        self.process: subprocess.Popen[str] | None = None
        self.ready_stubs: set[str] = set()
        self.log_tail: deque[str] = deque(maxlen=5000)
        self._log_thread: threading.Thread | None = None

    @property
    def local_address(self) -> str:
        """Where this host reaches the server: loopback when it listens on every address, else its one address."""
        return "127.0.0.1" if self.listen_address in ("0.0.0.0", "", "::") else self.listen_address

    @property
    def http_url(self) -> str:
        return f"{self.local_address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.local_address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.local_address}:{self.metrics_port}/metrics"

    def _missing_configs(self) -> list[str]:
        config = self.layout.config_name(self.target_name)
        return [
            name
            for name in self.layout.served_models
            if not (self.repository / name / CONFIGS_DIR / f"{config}.pbtxt").is_file()
        ]

    def check_repository(self) -> None:
        """Fail before starting if the target cannot run here or ``make build-artifacts`` has not run for it."""
        self.target_type().check_serving()
        config = self.layout.config_name(self.target_name)
        if missing := self._missing_configs():
            raise TritonProcessError(
                f"no {config} configs for {', '.join(missing)} in {self.repository}: "
                f"run `make build-artifacts TARGET={self.target_name} LAYOUT={self.layout.name}` first"
            )

    def repository_view(self) -> Path:
        """A folder holding only the layout's models (links into the repository), which Triton serves.

        Triton loads every model folder of a repository; the colocated layout must not start the three component
        models beside ``blip_vqa`` (on Neuron they would take NeuronCores), and explicit model control would open
        the load/unload API to every client. A view keeps one repository for both layouts.
        """
        if self.view is None:
            config = self.layout.config_name(self.target_name)
            if self.served is None and not self._missing_configs():
                self.served = choose(self.repository, self.layout, config, self.requested_version)
            self.view = Path(tempfile.mkdtemp(prefix=f"blip-repository-{self.layout.name}-"))
            write_view(self.view, self.repository, self.layout, config, self.served)
        return self.view

    def switch_version(self, version: int, timeout_s: float = 300.0) -> ServedVersion:
        """Serve ``version`` from now on, live, without refusing a request (``blip_serving.triton.model_versions``);
        ``VersionError`` before anything changes where it cannot be served so, ``TritonProcessError`` where a
        model did not load (the previous version is restored and keeps serving)."""
        config = self.layout.config_name(self.target_name)
        current = self.served or choose(self.repository, self.layout, config, self.requested_version)
        wanted = choose(self.repository, self.layout, config, version)
        check_compatible(current, wanted)
        control = self.model_control
        view = self.repository_view()
        write_view(view, self.repository, self.layout, config, wanted)
        loaded = []
        try:
            for model in self.layout.python_models:
                control.load(model, timeout_s)
                loaded.append(model)
        except TritonProcessError:
            write_view(view, self.repository, self.layout, config, current)
            for model in loaded:
                control.load(model, timeout_s)
            raise
        self.served = wanted
        log.info("serving %s (was %s)", wanted.describe(), current.describe())
        return wanted

    def command(self) -> list[str]:
        binary, backends = triton_installation()
        return [
            str(binary),
            f"--model-repository={self.repository_view()}",
            f"--backend-directory={backends or prepare_backend_directory(self.backend_root)}",
            f"--model-config-name={self.layout.config_name(self.target_name)}",
            f"--http-address={self.listen_address}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.listen_address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.listen_address}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            f"--allow-gpu-metrics={str(get_target(self.target_name).gpu_metrics).lower()}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
            *self.model_control_flags(),
            *trace_flags(self.env, f"blip-fleet-{self.target_name}"),
        ]

    def model_control_flags(self) -> list[str]:
        """Explicit model control (every model of the view loaded at start), open only to the secret's holder."""
        if self.model_control_secret is None:
            return []  # mode none: no client can load or unload anything
        return restricted_api_flags(self.model_control_secret)

    @property
    def model_control(self) -> ModelControl:
        if self.model_control_secret is None:
            raise TritonProcessError("this server was started without model control")
        return ModelControl(self.http_url, self.model_control_secret)

    def environment(self) -> dict[str, str]:
        return server_environment(self.env)

    def start(self, timeout_s: float = 180.0) -> TritonServer:
        self.check_repository()
        if not self.stub_python_checked:  # once: a supervisor's restart uses the same Python
            check_stub_numpy(stub_python())
            self.stub_python_checked = True
        stale = remove_stale_shm_regions()
        if stale:
            log.info("removed %d stale shared-memory region(s) left by a killed Triton", len(stale))
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._log_thread = threading.Thread(target=self._pump_log, daemon=True)
        self._log_thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # The reason comes first when tritonserver refuses its arguments (its usage text follows it).
                if self._log_thread is not None:
                    self._log_thread.join(timeout=2)
                head, tail = list(self.log_tail)[:15], self.recent_log(45)
                raise TritonProcessError(
                    f"tritonserver exited with {self.process.returncode}:\n" + "\n".join(head) + "\n...\n" + tail
                )
            if is_ready(self.http_url):
                # Every instance's stub is up now: the set a supervisor watches (taken here, not later, so that
                # a stub dying in the first moments is still seen to be missing).
                self.ready_stubs = set(self.stub_processes())
                return self
            time.sleep(0.25)
        self.stop()
        raise TritonProcessError(f"tritonserver not ready after {timeout_s:.0f}s:\n{self.recent_log()}")

    def _pump_log(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            self.log_tail.append(line.rstrip())
            if self.echo_log:
                triton_log.info("%s", line.rstrip())

    def recent_log(self, lines: int = 60) -> str:
        return "\n".join(list(self.log_tail)[-lines:])

    def is_ready(self) -> bool:
        return is_ready(self.http_url)

    def stop(self, grace_s: float = 40.0) -> None:
        """SIGTERM, then SIGKILL only after Triton's own 30 s exit timeout has had its chance."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.view is not None and (self.process is None or self.process.poll() is not None):
            shutil.rmtree(self.view, ignore_errors=True)
            self.view = None

    def stub_processes(self) -> dict[str, tuple[int, list[str]]]:
        """This server's Python-backend stubs by model instance name (``text_decoder_0_0``): pid and command line."""
        if self.process is None:
            return {}
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return {}
        stubs = {}
        for child in children:
            try:
                args = child.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            instance = stub_instance(args)
            if instance is not None:
                stubs[instance] = (child.pid, args)
        return stubs

    def kill(self) -> None:
        """SIGKILL the server and its stubs, and remove the shared-memory regions they leave in /dev/shm."""
        if self.process is None:
            return
        regions = stub_regions(args for _, args in self.stub_processes().values())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        unlink_regions(regions)

    def restart(self, grace_s: float = 3.0, timeout_s: float = 180.0) -> TritonServer:
        """The same server again on the same ports: a clean stop if it comes within ``grace_s`` (a dead stub makes
        Triton wait out its whole exit timeout), else a hard one; then start."""
        if self.process is not None and self.process.poll() is None and grace_s > 0:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.kill()  # no grace, or the server died: its stubs may live on, holding shared memory (and NeuronCores)
        self.stop()
        return self.start(timeout_s)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
