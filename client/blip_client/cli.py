"""Command line: ``blip-client ask --image client/samples/chelsea.png "Is the dog barking?"`` and ``blip-client probe``.

``probe`` is the fleets' readiness and liveness check (Kubernetes exec probe): one real scores-only inference of a
16x16 image through ``blip_vqa``. Triton's own ``/v2/health/ready`` stays 200 when a Python stub has died and every
inference fails; this does not. Exit 0 when the model answered, 1 with one line saying why not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from blip_client.client import BlipVqaClient, BlipVqaError
from blip_client.probe import probe_url
from blip_contract.env import env_default
from blip_contract.version import add_version_option

DEFAULT_URL = env_default("TRITON_URL") or f"127.0.0.1:{env_default('HTTP_PORT', '8000')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-client", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="ask questions about one image")
    ask.add_argument("questions", nargs="+")
    ask.add_argument("--image", type=Path, required=True)
    ask.add_argument("--url", default=DEFAULT_URL)
    ask.add_argument("--protocol", choices=("http", "grpc"), default="http")
    ask.add_argument("--timeout", type=float, default=60.0)
    probe = commands.add_parser("probe", help="exit 0 if blip_vqa answers a real one-question inference")
    probe.add_argument("--url", default=DEFAULT_URL)
    probe.add_argument("--protocol", choices=("http", "grpc"), default="http")
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds before the probe fails")
    args = add_version_option(parser).parse_args(argv)
    if args.command == "probe":
        return run_probe(args.url, args.protocol, args.timeout)
    try:
        image = args.image.read_bytes()
    except OSError as error:
        print(f"error: cannot read {args.image}: {error}", file=sys.stderr)
        return 2
    try:
        with BlipVqaClient(args.url, protocol=args.protocol, timeout_s=args.timeout) as client:
            started = time.perf_counter()
            answers = client.ask(image, args.questions)
            elapsed = time.perf_counter() - started
    except BlipVqaError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    for question, answer in zip(args.questions, answers, strict=True):
        print(f"{question} -> {answer}")
    print(f"({len(answers)} answers in {elapsed * 1000:.0f} ms)")
    return 0


def run_probe(url: str, protocol: str, timeout_s: float) -> int:
    result = probe_url(url, timeout_s, lambda u, t: BlipVqaClient(u, protocol=protocol, timeout_s=t))
    if not result.ok:
        print(f"probe failed: {url}: {result.error}", file=sys.stderr)
        return 1
    note = f"; {result.note}" if result.note else ""
    print(f"ok: {url} answered in {result.seconds * 1000:.0f} ms{note}")
    return 0
