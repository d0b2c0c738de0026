"""Two real Triton fleets behind the real API tier (``python -m blip_api``), and a steady load from threads.

Each fleet is the cpu repository served by its own tritonserver on its own ports (fleet `neuron` in the colocated
layout, `gpu` in the ensemble layout), named as the production
fleets are (``neuron``, ``gpu``); the API tier is the same process ``make api`` starts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from blip_bench.stack import AUTH
from blip_serving.triton.process import TritonServer


def restart(server: TritonServer) -> TritonServer:
    """A new server process on the same ports and repository: the fleet coming back."""
    return TritonServer(
        server.repository,
        server.target_name,
        layout=server.layout.name,
        http_port=server.http_port,
        grpc_port=server.grpc_port,
        metrics_port=server.metrics_port,
    ).start()


@dataclass
class Outcome:
    sent: float
    done: float
    status: int
    backend: str | None
    detail: str = ""


@dataclass
class Load:
    """Client threads posting frames back to back until stopped; every outcome is kept."""

    url: str
    image: bytes
    threads: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post(
                        "/v1/frames",
                        content=self.image,
                        params={"behavior": ["barking", "chewing_furniture"]},
                        headers=AUTH | {"Content-Type": "image/jpeg"},
                    )
                    body = response.json()
                    outcome = Outcome(
                        sent, time.monotonic(), response.status_code, body.get("backend"), str(body)[:300]
                    )
                except Exception as error:  # anything but a 200 with a body is a failure the test must see
                    outcome = Outcome(sent, time.monotonic(), 0, None, repr(error))
                with self._lock:
                    self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if start <= o.sent and o.done <= end]

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status != 200]


def share(outcomes: list[Outcome], backend: str) -> float:
    return sum(o.backend == backend for o in outcomes) / max(1, len(outcomes))
