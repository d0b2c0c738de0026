"""A webhook receiver on loopback for the tests and ``make bench-events``: it records every request and fails a
set share of them (``fail_every``: every n-th answered 500), the way an owner's flaky endpoint would."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from blip_serving.triton.process import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


class Receiver(ThreadingHTTPServer):
    """Answers 500 to requests 0, n, 2n, ... (``fail_every=2``: every other one), 200 to the rest."""

    daemon_threads = True

    def __init__(self, fail_every: int = 2) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.fail_every = fail_every
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/blip"

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def delivered(self) -> list[Received]:
        return [r for r in self.all() if r.status == 200]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        receiver: Receiver = self.server  # type: ignore[assignment]
        with receiver.lock:
            failing = receiver.fail_every > 0 and len(receiver.requests) % receiver.fail_every == 0
            status = 500 if failing else 200
            receiver.requests.append(
                Received({k.lower(): v for k, v in self.headers.items()}, body, status, time.time())
            )
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass
