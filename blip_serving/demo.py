"""``make demo`` starts the embedded Triton server, asks behavior questions about the sample photo, replays a
camera through the API tier (``blip_serving.replay``: the change gate, an event, its signed webhooks, on SQLite),
stops.

Run after ``make build-artifacts``; with random weights (the default, offline) the answers are meaningless,
but every step is the real one: Triton, the ensemble, the three traced artifacts, tritonclient, blip-api.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from blip_client.client import BlipVqaClient
from blip_contract.env import env_default
from blip_contract.version import add_version_option
from blip_serving import replay
from blip_serving.errors import TritonProcessError
from blip_serving.triton.process import TritonServer
from blip_serving.versions import VersionStore

# The checkout's sample photo: `make demo` runs from the checkout (an installed package never looks for one).
SAMPLE = Path("client/samples/chelsea.png")
QUESTIONS = ("Is the cat sleeping?", "Is the cat chewing furniture?", "What is the animal doing?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip-demo", description=__doc__)
    parser.add_argument("--target", default=env_default("TARGET", "cpu"))
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--image", type=Path, default=SAMPLE)
    parser.add_argument("--repeats", type=int, default=5, help="timed requests after the first")
    parser.add_argument("--no-camera", action="store_true", help="skip the camera replay through the API tier")
    args = add_version_option(parser).parse_args(argv)

    store = VersionStore(Path("artifacts", args.target))
    newest = store.latest()
    if newest is None:
        print(
            f"error: no model version in {store.root}: run make build-artifacts TARGET={args.target}", file=sys.stderr
        )
        return 1
    source = store.manifest(newest).record.checkpoint.source
    print(f"model: {source} ({args.target}); image: {args.image}")
    if source.startswith("random-"):
        print(f"NOTE: {source} has random weights, so these answers are meaningless; the serving path is real.")
    image = args.image.read_bytes()
    try:
        server = TritonServer(args.repository, args.target)
        print("starting Triton ...", flush=True)
        started = time.perf_counter()
        server.start()
    except TritonProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    status = 0
    try:
        print(f"Triton ready in {time.perf_counter() - started:.1f}s on http://{server.http_url}")
        with BlipVqaClient(server.http_url) as client:
            answers = client.ask(image, QUESTIONS)
            latencies = []
            for _ in range(args.repeats):
                tick = time.perf_counter()
                client.ask(image, QUESTIONS)
                latencies.append((time.perf_counter() - tick) * 1000)
        for question, answer in zip(QUESTIONS, answers, strict=True):
            print(f"  {question!r} -> {answer!r}")
        latencies.sort()
        print(
            f"latency for {len(QUESTIONS)} questions, {args.repeats} requests: "
            f"p50 {latencies[len(latencies) // 2]:.0f} ms, max {latencies[-1]:.0f} ms"
        )
        if not args.no_camera:
            status = replay.run(server.http_url, args.image)
    finally:
        server.stop()
        print("Triton stopped")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
