"""Deployment: run Triton on one target's configs; ``make serve``, the tests and the Docker images use this class.

Where ``/opt/tritonserver`` exists (NGC's ``tritonserver`` images) its binary and backends are used. Elsewhere
the real ``tritonserver`` that the nvidia-pytriton wheel ships runs, with a backend directory laid out from the
wheel's Python backend plus the stub for this Python. ``TritonServer`` starts it with
``--model-config-name <target>``, waits until every model is ready, and stops it with SIGTERM (SIGKILL after a
grace period).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from blip_serving.deploy.layouts import DEFAULT_LAYOUT, LAYOUT_NAMES, get_layout
from blip_serving.deploy.triton_config import CONFIGS_DIR
from blip_serving.errors import TargetUnavailableError
from blip_serving.spec import ENSEMBLE_NAME
from blip_serving.targets import TARGET_NAMES, get_target

# How the stubs' idle OpenMP workers wait: sleep after a short spin (GOMP_SPINCOUNT spins, about 30 us; torch's
# wheels use libgomp). A stub's team has as many threads as cores, so a long spin fights any other busy process.
# `make bench` on 2 cores (random-base, colocated, 1 instance; c=1 p50 alone / beside one busy core / idle CPU):
# ACTIVE (5 min spin) 762 / 8963 ms / a whole core; PASSIVE 839 / 1546 ms / 0; this 749 / 1572 ms / 0. libgomp's
# default (3 ms spin) measured 729 / 8231 ms. The ensemble's stubs gain as much (c=1 p50 833 -> 764 ms).
OPENMP_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def openmp_wait(env: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP wait settings the stubs get: the caller's own where either variable is set, else ours."""
    own = {name: env[name] for name in OPENMP_WAIT if name in env}
    return own or dict(OPENMP_WAIT)


SHM_PREFIX = "triton_python_backend_shm"
# Triton's model-repository API (load, unload, index) answers only requests carrying this header with the
# server's secret: the supervisor's. Every other client gets 403, on HTTP and gRPC alike.
MODEL_CONTROL_HEADER = "x-blip-supervisor"


def remove_stale_shm_regions(min_age_s: float = 10.0) -> list[str]:
    """Unlink Python-backend shared-memory regions that no process maps any more; the names removed.

    A SIGKILLed Triton (OOM killer, a crashed container, ``kill -9``) leaves its stubs' regions in /dev/shm, at
    least 1 MiB each. In a pod, /dev/shm is an emptyDir that outlives container restarts: without this, every
    crash would shrink it until Triton could not start. A region in use is mapped by its stub or by tritonserver;
    ``min_age_s`` spares one created a moment ago and not mapped yet.
    """
    shm = Path("/dev/shm")
    candidates = list(shm.glob(f"{SHM_PREFIX}*")) if shm.is_dir() else []
    if not candidates:
        return []
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            mapped.update(line.rsplit(None, 1)[-1] for line in maps.read_text().splitlines() if "/dev/shm/" in line)
    removed = []
    now = time.time()
    for region in candidates:
        with contextlib.suppress(OSError):
            if str(region) not in mapped and now - region.stat().st_mtime > min_age_s:
                region.unlink()
                removed.append(region.name)
    return removed


def stub_instance(args: list[str]) -> str:
    """The model instance a Python-backend stub serves (``text_decoder_0_0``), from its command line, which ends
    ``... <shm size> <instance name> <kind>`` (a trailing empty field from /proc's NUL separators aside)."""
    fields = [arg for arg in args if arg]
    return fields[-2]


class ServerError(RuntimeError):
    """The server could not start, or died."""


def _pytriton_root() -> Path:
    """Where the nvidia-pytriton wheel put ``pytriton/``; found, not imported (its ``__init__`` pulls in its client)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("no tritonserver: install the embedded-triton extra (nvidia-pytriton) or set TRITON_ROOT")
    return Path(next(iter(spec.submodule_search_locations)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


NGC_TRITON_ROOT = Path("/opt/tritonserver")
# The Python interpreter whose environment the backend stubs run in (default: this one). It may differ from the
# supervisor's: the stubs need numpy < 2, a host's other tools may need numpy 2.
STUB_PYTHON_ENV = "BLIP_STUB_PYTHON"


def stub_python() -> Path:
    return Path(os.environ.get(STUB_PYTHON_ENV) or sys.executable)


def check_stub_numpy(python: Path) -> None:
    """Refuse numpy 2 in the stubs' environment before Triton starts, in one line.

    Triton 2.51's Python backend stub is built against numpy 1 (pybind11): under numpy 2 it reads a BYTES
    input's length prefixes as garbage and dies at the first request, while the server still reports ready.
    Measured on the GPU check (H200, numpy 2.5.2) and reproduced here with numpy 2.2.6.
    """
    probe = subprocess.run(
        [str(python), "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True, timeout=60
    )
    version = probe.stdout.strip()
    if probe.returncode != 0:
        raise ServerError(f"the stubs' Python {python} cannot import numpy: {probe.stderr.strip()[-300:]}")
    if int(version.split(".")[0]) >= 2:
        raise ServerError(
            f"the stubs' Python {python} has numpy {version}; Triton 2.51's Python backend stub needs numpy < 2 "
            f"(it misreads BYTES inputs and dies): install numpy 1.26.4 there, or point {STUB_PYTHON_ENV} at a "
            "Python that has it"
        )


def triton_installation() -> tuple[Path, Path | None]:
    """The tritonserver binary, and the NGC backends directory (None: lay one out from the wheel)."""
    root = Path(os.environ.get("TRITON_ROOT") or NGC_TRITON_ROOT)
    if (root / "bin" / "tritonserver").is_file():
        return root / "bin" / "tritonserver", root / "backends"
    return _pytriton_root() / "tritonserver" / "bin" / "tritonserver", None


def prepare_backend_directory(root: Path) -> Path:
    """``<root>/python/`` = the wheel's Python backend + this interpreter's stub, as Triton expects them."""
    wheel = _pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = wheel / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
    target = root / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in (*sorted((wheel / "backends" / "python").glob("*.*")), stub):
        destination = target / source.name
        if source.is_file() and (not destination.exists() or destination.stat().st_size != source.stat().st_size):
            shutil.copy2(source, destination)
    return root


class TritonServer:
    """A tritonserver process serving one repository for one target (on 127.0.0.1 unless ``host`` says)."""

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
        host: str = "127.0.0.1",
        layout: str = DEFAULT_LAYOUT,
        model_control: bool = False,
    ) -> None:
        self.target_type = get_target(target)  # an unknown name fails here, in one line
        self.layout = get_layout(layout)
        # Explicit model control, restricted to the holder of this secret (kept in this process's memory; the
        # tritonserver command line carries it, readable only by whoever may already signal the server).
        self.model_control_secret = secrets.token_urlsafe(24) if model_control else None
        self.repository = repository.resolve()
        self.target = target
        self.view: Path | None = None
        self.stub_python_checked = False
        self.host = host
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log_verbose = log_verbose
        self.backend_root = backend_root or Path(tempfile.gettempdir()) / f"blip-serving-backends-{os.getuid()}"
        self.process: subprocess.Popen[str] | None = None
        self.ready_stubs: set[str] = set()
        self.log_tail: deque[str] = deque(maxlen=5000)
        self._log_thread: threading.Thread | None = None

    @property
    def local_address(self) -> str:
        """Where this host reaches the server: loopback when it listens on every address, else its one address."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def http_url(self) -> str:
        return f"{self.local_address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.local_address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.local_address}:{self.metrics_port}/metrics"

    def check_repository(self) -> None:
        """Fail before starting if the target cannot run here or ``make build-artifacts`` has not run for it."""
        self.target_type().check_serving()
        config = self.layout.config_name(self.target)
        missing = [
            name
            for name in self.layout.served_models
            if not (self.repository / name / CONFIGS_DIR / f"{config}.pbtxt").is_file()
        ]
        if missing:
            raise ServerError(
                f"no {config} configs for {', '.join(missing)} in {self.repository}: "
                f"run `make build-artifacts TARGET={self.target} LAYOUT={self.layout.name}` first"
            )

    def repository_view(self) -> Path:
        """A folder holding only the layout's models (links into the repository), which Triton serves.

        Triton loads every model folder of a repository; the colocated layout must not start the three component
        models beside ``blip_vqa`` (on Neuron they would take NeuronCores), and explicit model control would open
        the load/unload API to every client. A view keeps one repository for both layouts.
        """
        if self.view is None:
            self.view = Path(tempfile.mkdtemp(prefix=f"blip-repository-{self.layout.name}-"))
            for name in self.layout.served_models:
                (self.view / name).symlink_to(self.repository / name, target_is_directory=True)
        return self.view

    def command(self) -> list[str]:
        binary, backends = triton_installation()
        return [
            str(binary),
            f"--model-repository={self.repository_view()}",
            f"--backend-directory={backends or prepare_backend_directory(self.backend_root)}",
            f"--model-config-name={self.layout.config_name(self.target)}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
            *self.model_control_flags(),
        ]

    def model_control_flags(self) -> list[str]:
        """Explicit model control (every model of the view loaded at start), open only to the secret's holder."""
        if self.model_control_secret is None:
            return []  # mode none: no client can load or unload anything
        guard = f"model-repository:{MODEL_CONTROL_HEADER}={self.model_control_secret}"
        return [
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--http-restricted-api={guard}",
            f"--grpc-restricted-protocol={guard}",
        ]

    def reload_model(self, model: str, timeout_s: float = 120.0, drain_s: float = 1.5) -> None:
        """Unload ``model``, let its in-flight requests fail, then load it, through the restricted model-repository
        API; raises ``ServerError``.

        Unload is asynchronous, and with a dead stub it never completes (the model stays UNLOADING). A load sent at
        once is folded into it: the old instance, and every request stuck on the dead stub, then live until the new
        instance is ready (measured: a request in flight on the killed stub waited the whole load, 5 s here).
        Given ``drain_s`` first, the unload failed such a request after 0.7 to 1.0 s on an idle machine, so a router
        could retry it elsewhere at once; under the soak's load, requests in flight at the kill still waited for the
        load (2 to 7 s, README). On Neuron the old process has released its NeuronCores before the new one reserves
        them.
        Loading a component an ensemble uses makes the ensemble whole again.
        """
        self._model_control(f"models/{model}/unload", 30.0)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.model_state(model) != "UNAVAILABLE":
            time.sleep(0.1)
        self._model_control(f"models/{model}/load", timeout_s)

    def model_state(self, model: str) -> str | None:
        """The model's state in the repository index (READY, UNAVAILABLE, LOADING, ...)."""
        entries = json.loads(self._model_control("index", 10.0) or "[]")
        return next((entry.get("state") for entry in entries if entry.get("name") == model), None)

    def _model_control(self, path: str, timeout_s: float) -> str:
        if self.model_control_secret is None:
            raise ServerError("this server was started without model control")
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/{path}",
            method="POST",
            headers={MODEL_CONTROL_HEADER: self.model_control_secret},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.read().decode()
        except (urllib.error.URLError, OSError) as error:
            detail = error.read().decode(errors="replace") if isinstance(error, urllib.error.HTTPError) else ""
            raise ServerError(f"{path} failed: {error} {detail}".strip()) from error

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(openmp_wait(env))
        if triton_installation()[1] is not None:
            return env  # NGC image: its own libraries are already where tritonserver looks
        libs = _pytriton_root().parent / "nvidia_pytriton.libs"
        # The stub must load the libpython of this interpreter, not another 3.11 on the system: extension
        # modules (lib-dynload/_ssl, ...) are built against this one and fail to import otherwise.
        libpython_dir = sysconfig.get_config_var("LIBDIR") or ""
        own_libpython = Path(libpython_dir, sysconfig.get_config_var("LDLIBRARY") or "").is_file()
        paths = [libpython_dir if own_libpython else "", str(libs), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, paths))
        # The Python stub runs the first python3 on PATH's environment: this virtual environment's, or the one
        # BLIP_STUB_PYTHON names.
        env["PATH"] = os.pathsep.join([str(stub_python().parent), env.get("PATH", "")])
        return env

    def start(self, timeout_s: float = 180.0) -> TritonServer:
        self.check_repository()
        if not self.stub_python_checked:  # once: a supervisor's restart uses the same Python
            check_stub_numpy(stub_python())
            self.stub_python_checked = True
        stale = remove_stale_shm_regions()
        if stale:
            print(f"removed {len(stale)} stale shared-memory region(s) left by a killed Triton", flush=True)
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
                raise ServerError(
                    f"tritonserver exited with {self.process.returncode}:\n" + "\n".join(head) + "\n...\n" + tail
                )
            if self.is_ready():
                # Every instance's stub is up now: the set a supervisor watches (taken here, not later, so that
                # a stub dying in the first moments is still seen to be missing).
                self.ready_stubs = set(self.stub_processes())
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver not ready after {timeout_s:.0f}s:\n{self.recent_log()}")

    def _pump_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.log_tail.append(line.rstrip())
            if self.echo_log:
                print(line, end="", flush=True)

    def recent_log(self, lines: int = 60) -> str:
        return "\n".join(list(self.log_tail)[-lines:])

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

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
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        stubs = {}
        for pid in map(int, children.split()):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if "triton_python_backend_stub" in args[0]:
                stubs[stub_instance(args)] = (pid, args)
        return stubs

    @staticmethod
    def model_of(instance: str) -> str:
        """``text_decoder_0_0`` -> ``text_decoder``: Triton names instances ``<model>_<group>_<index>``."""
        return re.sub(r"_\d+_\d+$", "", instance)

    def kill(self) -> None:
        """SIGKILL the server and its stubs, and remove the shared-memory regions they leave in /dev/shm."""
        if self.process is None:
            return
        regions = [a for _, args in self.stub_processes().values() for a in args if a.startswith(SHM_PREFIX)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for name in regions:
            Path("/dev/shm", name).unlink(missing_ok=True)

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


def main(argv: list[str] | None = None) -> int:
    """``make serve``: run until SIGTERM or Ctrl-C, then shut Triton down cleanly."""
    parser = argparse.ArgumentParser(prog="blip-serve", description=main.__doc__)
    parser.add_argument("--target", choices=TARGET_NAMES, default=os.environ.get("TARGET", "cpu"))
    parser.add_argument(
        "--layout",
        choices=LAYOUT_NAMES,
        default=os.environ.get("LAYOUT") or None,
        help=f"default: the layout of artifacts/plan-<target>.json (make plan), else {DEFAULT_LAYOUT}",
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where make plan wrote its plan")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1", help="address to listen on")
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("HTTP_PORT", "8000")))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GRPC_PORT", "8001")))
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("METRICS_PORT", "8002")))
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--heal-interval-s",
        type=float,
        default=float(os.environ.get("HEAL_INTERVAL_S") or 2.0),
        help="self-healing: probe Triton with a real inference this often, restart it when it stops answering; 0: off",
    )
    parser.add_argument(
        "--supervisor-metrics-port",
        type=int,
        default=int(os.environ.get("SUPERVISOR_METRICS_PORT") or 0),
        help="Prometheus metrics of the supervisor (recoveries, probes) on this port; 0: off",
    )
    args = parser.parse_args(argv)
    if args.layout is None:
        from blip_serving.deploy.placement import read_plan

        plan = read_plan(args.artifacts, args.target)
        args.layout = plan["layout"] if plan else DEFAULT_LAYOUT
        if plan:
            print(f"layout {args.layout} from the plan for HOST={plan['host']}", flush=True)
    server = TritonServer(
        args.repository,
        args.target,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        host=args.host,
        layout=args.layout,
        model_control=args.heal_interval_s > 0,  # the supervisor reloads a model whose stub died
    )
    server.echo_log = True
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (ServerError, TargetUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"\nTriton is ready ({args.target}, {args.layout} layout): HTTP {server.http_url}  gRPC {server.grpc_url}  "
        f"metrics {server.metrics_url}  model {ENSEMBLE_NAME}\n",
        flush=True,
    )
    if args.heal_interval_s > 0:
        from blip_serving.deploy.supervisor import Supervisor

        supervisor = Supervisor(server, interval_s=args.heal_interval_s, log=lambda line: print(line, flush=True))
        if args.supervisor_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(args.supervisor_metrics_port, addr=args.host, registry=supervisor.registry)
        supervisor.run(stop)
    else:
        while not stop.wait(1.0):
            if server.process is not None and server.process.poll() is not None:
                print(f"error: tritonserver exited with {server.process.returncode}", file=sys.stderr)
                return 1
    print("shutting down Triton", flush=True)
    server.stop()
    return 0


if __name__ == "__main__":
    # Run main from the module's importable name, not as __main__: the supervisor imports this module, and its
    # ServerError must be the class the server raises.
    from blip_serving.deploy.server import main as _main

    raise SystemExit(_main())
