"""Command line: ``blip-client ask --image dog.jpg "Is the dog barking?" "Is the dog playing?"``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from blip_client.client import BlipVqaClient, BlipVqaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-client", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="ask questions about one image")
    ask.add_argument("questions", nargs="+")
    ask.add_argument("--image", type=Path, required=True)
    ask.add_argument("--url", default=os.environ.get("TRITON_URL", f"127.0.0.1:{os.environ.get('HTTP_PORT', '8000')}"))
    ask.add_argument("--protocol", choices=("http", "grpc"), default="http")
    ask.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
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
