"""``make demo``'s camera: a fixed-camera clip through the API tier's camera routes, on the embedded SQLite store.

The main job end to end, with nothing to start by hand: ``blip-api`` runs as its own process in front of the demo's
Triton (its event store a SQLite file in a temporary folder), a camera is registered with the admin API, a clip of
an empty room that a pet crosses is posted frame by frame at its capture times, and a webhook receiver on loopback
checks each delivery's signature. What it shows: the change gate (which frames reached the fleet, and why), one
event with its key frame, and its ``started`` and ``ended`` notifications, signed, each under its own key.

The demo's checkpoint has random weights, so its scores carry no meaning: the demo sets the camera's thresholds
under them while the pet is in view and over them once it left (``PUT /admin/cameras/{id}``, live, no restart),
the way an owner would tune a camera. With a trained checkpoint the scores alone would start and end the event.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from blip_events.notify import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify
from blip_events.records import EventView, FrameOutcome, WebhookBody, rfc3339
from blip_images.clips import Clip, object_enters
from blip_serving.triton.process import free_port, stop_process

CAMERA = "living-room"
BEHAVIOR = "barking"
# The pet is in view from the clip's change to its end (object_enters: changes = [enter, leave]).
IN_VIEW = {"enter": 0.001, "exit": 0.0005}
OUT_OF_VIEW = {"enter": 0.999, "exit": 0.99}
CUTOFF_S = 5.0  # seconds below exit that end the event: short, so that the clip holds both ends


class Hooks(ThreadingHTTPServer):
    """The owner's webhook endpoint on loopback: keeps each delivery and whether its signature verified."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _HookHandler)
        self.secret = ""
        self.received: list[tuple[WebhookBody, str, bool]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/blip"


class _HookHandler(BaseHTTPRequestHandler):
    server: Hooks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        signed = verify(self.server.secret, body, self.headers.get(SIGNATURE_HEADER, ""), time.time())
        with self.server.lock:
            self.server.received.append(
                (WebhookBody.model_validate_json(body), self.headers.get(IDEMPOTENCY_HEADER, ""), signed)
            )
        self.send_response(200 if signed else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:  # the demo prints what it received, not an access log
        pass


class Api:
    """``python -m blip_api`` on a free loopback port, its store a SQLite file in ``work``."""

    def __init__(self, fleet_url: str, work: Path) -> None:
        config = work / "api.toml"
        # The defaults of client/api.toml, with this demo's fleet and a webhook receiver on loopback (development
        # only: [webhooks] allow_insecure is false unless a config says otherwise).
        config.write_text(
            f'[backends.demo]\nurl = "{fleet_url}"\n\n'
            "[webhooks]\nallow_insecure = true\nfirst_retry_s = 0.5\npoll_interval_s = 0.1\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = secrets.token_urlsafe(24)
        self.store = work / "events.sqlite3"
        self.log = work / "api.log"
        env = dict(
            os.environ,
            BLIP_API_TOKEN=secrets.token_urlsafe(24),
            BLIP_API_ADMIN_TOKEN=self.admin,
            BLIP_DB_URL=f"sqlite:///{self.store}",
        )
        command = [sys.executable, "-m", "blip_api", "--config", str(config), "--port", str(self.port)]
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/healthz`` says the fleet passes its probes; the log's tail in the error otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"blip-api exited:\n{self.log.read_text()[-2000:]}")
            if call("GET", f"{self.url}/healthz")[0] == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"blip-api not ready in {timeout_s:g}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.process, 20)


def call(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request (the serving venv has no HTTP client library beyond the standard one); connection
    errors are status 0."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def put_camera(api: Api, settings: dict[str, Any]) -> dict[str, Any]:
    status, body = call(
        "PUT",
        f"{api.url}/admin/cameras/{CAMERA}",
        json.dumps(settings).encode(),
        {"Authorization": f"Bearer {api.admin}", "Content-Type": "application/json"},
    )
    if status not in (200, 201):
        raise RuntimeError(f"PUT /admin/cameras/{CAMERA}: {status} {body.decode(errors='replace')}")
    return json.loads(body)


def replay(api: Api, hooks: Hooks, clip: Clip) -> list[FrameOutcome]:
    """Registers the camera and posts the clip at its capture times (ending now), as fast as it is answered; the
    thresholds follow the pet in and out of view."""
    created = put_camera(
        api,
        {
            "behaviors": {BEHAVIOR: OUT_OF_VIEW},
            "events": {"cutoff_s": CUTOFF_S, "cooldown_s": 0},
            "webhook_url": hooks.url,
        },
    )
    hooks.secret = created["webhook_secret"]
    headers = {"Authorization": f"Bearer {created['token']}", "Content-Type": "image/jpeg"}
    start = time.time() - clip.times[-1] - 1.0
    enter, leave = clip.changes
    outcomes = []
    for index, (at, frame) in enumerate(zip(clip.times, clip.frames, strict=True)):
        if index in (enter, leave):
            put_camera(api, {"behaviors": {BEHAVIOR: IN_VIEW if index == enter else OUT_OF_VIEW}})
        status, body = call(
            "POST", f"{api.url}/v1/cameras/{CAMERA}/frames?captured_at={rfc3339(start + at)}", frame, headers
        )
        if status != 200:
            raise RuntimeError(f"frame {index}: {status} {body.decode(errors='replace')}")
        outcomes.append(FrameOutcome.model_validate_json(body))
    return outcomes


def wait_for_deliveries(hooks: Hooks, kinds: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with hooks.lock:
            if len(hooks.received) >= kinds:
                return
        time.sleep(0.1)


def run(fleet_url: str, photo: Path) -> int:
    """The camera part of ``make demo`` against the Triton at ``fleet_url``, its clip made from ``photo``; prints
    what happened, 0 when one event started and ended with both webhooks delivered and verified."""
    clip = object_enters(photo)
    enter, leave = clip.changes
    with tempfile.TemporaryDirectory(prefix="blip-demo-") as folder:
        hooks = Hooks()
        threading.Thread(target=hooks.serve_forever, daemon=True).start()
        api = Api(fleet_url, Path(folder))
        try:
            api.wait_ready()
            print(
                f"camera {CAMERA!r}: {len(clip.frames)} frames of a fixed camera ({clip.times[-1] + 0.5:g} s at 2 frames/s,"
                f" {clip.size[0]}x{clip.size[1]}); a pet is in view from {clip.times[enter]:g} s to {clip.times[leave]:g} s"
            )
            print(f"  blip-api on {api.url}, event store {api.store.name} (SQLite, embedded); webhooks to {hooks.url}")
            started = time.perf_counter()
            outcomes = replay(api, hooks, clip)
            elapsed = time.perf_counter() - started
            wait_for_deliveries(hooks, 2)
            status, body = call(
                "GET", f"{api.url}/v1/cameras/{CAMERA}/events", headers={"Authorization": f"Bearer {api.admin}"}
            )
            events = [EventView.model_validate(e) for e in json.loads(body)["events"]] if status == 200 else []
            keyframe = (
                call(
                    "GET",
                    f"{api.url}/v1/cameras/{CAMERA}/events/{events[0].id}/keyframe",
                    headers={"Authorization": f"Bearer {api.admin}"},
                )[1]
                if events
                else b""
            )
        finally:
            api.stop()
            hooks.shutdown()
            hooks.server_close()
    return report(outcomes, events, keyframe, hooks, elapsed)


def report(outcomes: list[FrameOutcome], events: list[EventView], keyframe: bytes, hooks: Hooks, elapsed: float) -> int:
    inferred = Counter(o.reason for o in outcomes if not o.gated)
    gated = sum(o.gated for o in outcomes)
    print(
        f"  {len(outcomes)} frames in {elapsed:.1f} s: {sum(inferred.values())} inferred"
        f" ({', '.join(f'{reason} {count}' for reason, count in inferred.most_common())}),"
        f" {gated} gated ({gated / len(outcomes):.0%}: answered from the last inferred frame, no fleet call)"
    )
    for event in events:
        print(
            f"  event {event.id}: {event.behavior} ({event.question!r}) {event.state}, {event.started_at} to"
            f" {event.ended_at}, peak {event.peak_score:.4f}, {event.frames_inferred} frames inferred and"
            f" {event.frames_gated} gated during it; key frame {len(keyframe)} bytes"
        )
    for delivery, key, signed in hooks.received:
        print(
            f"  webhook {delivery.kind} for {delivery.event.id}: Idempotency-Key {key},"
            f" signature {'verified' if signed else 'WRONG'}"
        )
    kinds = sorted(d.kind for d, _, signed in hooks.received if signed)
    if len(events) != 1 or events[0].state != "ended" or kinds != ["ended", "started"] or not keyframe:
        print("error: expected one ended event, its key frame, and its started and ended webhooks", file=sys.stderr)
        return 1
    return 0
