"""``make serve`` / ``blip-serve``: Triton for one target and layout, with the self-healing supervisor around it.

The entry point on top of the serving layers: it reads the plan for the default layout, starts ``TritonServer``
and hands it to the ``Supervisor``; neither of those imports this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from prometheus_client import start_http_server

from blip_contract.env import env_default
from blip_contract.logs import configure_logging
from blip_contract.version import add_version_option
from blip_serving.errors import ArtifactError, TargetUnavailableError, TritonProcessError
from blip_serving.layouts import DEFAULT_LAYOUT, LAYOUT_NAMES, get_layout
from blip_serving.placement import read_plan
from blip_serving.spec import PUBLIC_MODEL
from blip_serving.supervisor import Supervisor
from blip_serving.targets import TARGET_NAMES
from blip_serving.triton.model_versions import choose
from blip_serving.triton.process import TritonServer
from blip_serving.versions import VersionError, parse_version, read_version_file

log = logging.getLogger("blip_serving.serve")


def _version(text: str) -> int:
    try:
        return parse_version(text)
    except VersionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blip-serve", description=main.__doc__)
    parser.add_argument("--target", choices=TARGET_NAMES, default=env_default("TARGET", "cpu"))
    parser.add_argument(
        "--layout",
        choices=LAYOUT_NAMES,
        default=env_default("LAYOUT"),
        help=f"default: the layout of artifacts/plan-<target>.json (make plan), else {DEFAULT_LAYOUT}",
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where make plan wrote its plan")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--listen-address",
        "--host",
        default=env_default("LISTEN_ADDRESS", "127.0.0.1"),
        help="address to listen on (0.0.0.0 in a container)",
    )
    parser.add_argument("--http-port", type=int, default=int(env_default("HTTP_PORT", "8000") or 8000))
    parser.add_argument("--grpc-port", type=int, default=int(env_default("GRPC_PORT", "8001") or 8001))
    parser.add_argument("--metrics-port", type=int, default=int(env_default("METRICS_PORT", "8002") or 8002))
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--heal-interval-s",
        type=float,
        default=float(env_default("HEAL_INTERVAL_S", "2.0") or 2.0),
        help="self-healing: probe Triton with a real inference this often, restart it when it stops answering; 0: off",
    )
    parser.add_argument(
        "--model-version",
        type=_version,
        default=env_default("MODEL_VERSION") or None,
        help="the model version (artifacts/<target>/<N>) to serve; default: the one the configs name, the last build's",
    )
    parser.add_argument(
        "--model-version-file",
        type=Path,
        default=Path(env_default("MODEL_VERSION_FILE")) if env_default("MODEL_VERSION_FILE") else None,
        help="a file naming the version to serve (a ConfigMap key in a cluster): read at start, before "
        "--model-version, and every heal interval after, switching live when it changes",
    )
    parser.add_argument(
        "--set-model-version",
        type=_version,
        default=None,
        metavar="N",
        help="write N into --model-version-file, after checking that version N exists, and exit: every blip-serve "
        "reading that file switches to it live (rollback: the same with the old version)",
    )
    parser.add_argument(
        "--supervisor-metrics-port",
        type=int,
        default=int(env_default("SUPERVISOR_METRICS_PORT", "0") or 0),
        help="Prometheus metrics of the supervisor (recoveries, probes) on this port; 0: off",
    )
    return add_version_option(parser)


def main(argv: list[str] | None = None) -> int:
    """``make serve``: run until SIGTERM or Ctrl-C, then shut Triton down cleanly."""
    args = parser().parse_args(argv)
    configure_logging()
    if args.set_model_version is not None:
        return set_model_version(args)
    try:
        from_file = read_version_file(args.model_version_file) if args.model_version_file else None
    except VersionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.layout is None:
        plan = read_plan(args.artifacts, args.target)
        args.layout = plan.layout if plan else DEFAULT_LAYOUT
        if plan:
            log.info("layout %s from the plan for HOST_TYPE=%s", args.layout, plan.host)
    server = TritonServer(
        args.repository,
        args.target,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        listen_address=args.listen_address,
        layout=args.layout,
        model_control=args.heal_interval_s > 0,  # the supervisor reloads a model whose stub died
        model_version=from_file or args.model_version,
    )
    server.echo_log = True
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (TritonProcessError, TargetUnavailableError, ArtifactError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    log.info(
        "Triton is ready (%s, %s layout, %s): HTTP %s  gRPC %s  metrics %s  model %s",
        args.target,
        args.layout,
        server.served.describe() if server.served else "",
        server.http_url,
        server.grpc_url,
        server.metrics_url,
        PUBLIC_MODEL,
    )
    if args.heal_interval_s > 0:
        supervisor = Supervisor(server, interval_s=args.heal_interval_s, version_file=args.model_version_file)
        if args.supervisor_metrics_port:
            start_http_server(args.supervisor_metrics_port, addr=args.listen_address, registry=supervisor.registry)
        supervisor.run(stop)
    else:
        while not stop.wait(1.0):
            if server.process is not None and server.process.poll() is not None:
                print(f"error: tritonserver exited with {server.process.returncode}", file=sys.stderr)
                return 1
    log.info("shutting down Triton")
    server.stop()
    return 0


def set_model_version(args: argparse.Namespace) -> int:
    """``--set-model-version N``: the one command that switches every server reading the file (and rolls back)."""
    if args.model_version_file is None:
        print("error: --set-model-version needs --model-version-file (or BLIP_MODEL_VERSION_FILE)", file=sys.stderr)
        return 2
    layout = get_layout(args.layout or DEFAULT_LAYOUT)
    try:
        served = choose(args.repository, layout, layout.config_name(args.target), args.set_model_version)
    except (ArtifactError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    temporary = args.model_version_file.with_name(args.model_version_file.name + ".tmp")
    temporary.write_text(f"{args.set_model_version}\n")
    os.replace(temporary, args.model_version_file)
    print(f"{args.model_version_file}: {served.describe()}; servers reading it switch within their heal interval")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
