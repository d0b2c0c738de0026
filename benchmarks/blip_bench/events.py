"""``make bench-events``: the event layer measured through the real API tier (``blip-api`` processes) and a real
fleet (Triton, random-tiny: what is measured is the API tier and the store, not the model).

1. **Gate**: each clip (the project's own, and ``../shared/clips`` where present) replayed by M concurrent cameras
   at its capture times, N times faster: frames posted, frames inferred (Triton's own count), the gated share, and
   the frames from each labelled scene change to its first inference.
2. **Cost**: API CPU-ms per gated and per inferred frame at 640x360 and 1920x1080 (the process's own CPU time),
   against the stateless ``/v1/frames`` on the same frames; store time per frame on SQLite and on PostgreSQL; and
   the gate's luma decode alone (in this process), the share of a gated frame that grows with the JPEG; and the
   CPU price of one bare worker-thread round trip on this machine, which a gated frame pays once and an inferred
   one twice. The split beside it: the API's cheapest request (``GET /livez``: HTTP and the middleware alone), and
   the event layer alone in this process (``CameraService.process`` on SQLite, a stand-in fleet, no HTTP).
3. **Alert quality**: the labelled score corpus (``score_corpus``): event recall and precision, notifications per
   camera-hour against per-frame alerts.
4. **Nothing lost**: the API killed with SIGKILL during a replay while the webhook receiver fails every other
   request: every event's ``started`` and ``ended`` arrive, each under one idempotency key.

Writes ``benchmarks/results/events-cpu.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import httpx
import psutil
import tritonclient.http as triton_http
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from blip_api.settings import TOKEN_ENV, ApiSettings
from blip_bench import score_corpus
from blip_bench.frames import ROOT, SAMPLE, SHARED_CLIPS
from blip_bench.machine import machine
from blip_bench.postgres import postgres_server
from blip_bench.receiver import Receiver
from blip_bench.stack import ADMIN, AUTH, TOKEN, ApiProcess, write_api_config
from blip_bench.workspace import prepare
from blip_contract.version import add_version_option
from blip_events import gate
from blip_events.metrics import EventMetrics
from blip_events.service import CameraService, Scored
from blip_events.settings import CameraPatch, EventDefaults, GatePatch, GateSettings, ThresholdsPatch
from blip_events.store import Store
from blip_images.clips import Clip, lighting, made_clips, shared_clips, static_noise
from blip_images.frame import Frame
from blip_serving.triton.process import TritonServer

RESULTS = ROOT / "benchmarks" / "results"
BEHAVIORS = ("barking", "eating", "sleeping")
# Probes are real inferences: rare here, so that Triton's count is the frames' own.
QUIET_ROUTER = 60.0


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Camera:
    id: str
    token: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_camera(api_url: str, camera_id: str, **settings: Any) -> Camera:
    response = httpx.put(f"{api_url}/admin/cameras/{camera_id}", json=settings, headers=ADMIN, timeout=30)
    response.raise_for_status()
    body = response.json()
    return Camera(camera_id, body["token"], body["webhook_secret"])


def post_frame(client: httpx.Client, api_url: str, camera: Camera, frame: bytes, at: float) -> dict[str, Any]:
    response = client.post(
        f"{api_url}/v1/cameras/{camera.id}/frames",
        content=frame,
        params={"captured_at": rfc3339(at)},
        headers=camera.auth | {"Content-Type": "image/jpeg"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def replay(api_url: str, camera: Camera, clip: Clip, start: float, speed: float) -> list[dict[str, Any]]:
    """The clip's frames in order, each sent at its capture time divided by ``speed`` (0: as fast as answered)."""
    began, outcomes = time.monotonic(), []
    with httpx.Client() as client:
        for at, frame in zip(clip.times, clip.frames):
            if speed > 0:
                time.sleep(max(0.0, began + at / speed - time.monotonic()))
            outcomes.append(post_frame(client, api_url, camera, frame, start + at))
    return outcomes


def triton_inferences(server: TritonServer) -> int:
    """Frames the fleet ran, in either form: its first Python model's count (the one that takes the frame)."""
    stats = triton_http.InferenceServerClient(server.http_url).get_inference_statistics(server.layout.python_models[0])
    return sum(int(model.get("inference_count", 0)) for model in stats["model_stats"])


def metrics(api_url: str, *names: str) -> tuple[float, ...]:
    """Each named sample's sum over its labels, from one scrape of the API's ``/metrics``."""
    text = httpx.get(f"{api_url}/metrics", timeout=10).text
    sums = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
    return tuple(sums[name] for name in names)


def late_frames(clip: Clip, outcomes: list[dict[str, Any]]) -> list[int]:
    """Per labelled change: frames from the change to the first inferred frame (0: the change itself)."""
    found = []
    for change in clip.changes:
        later = [i for i in range(change, len(outcomes)) if not outcomes[i]["gated"]]
        found.append(later[0] - change if later else len(outcomes) - change)
    return found


def gate_section(api: ApiProcess, server: TritonServer, clips: list[Clip], cameras: int, speed: float) -> list[dict]:
    rows = []
    for number, clip in enumerate(clips):
        made = [add_camera(api.url, f"gate-{number}-{i}", behaviors={b: {} for b in BEHAVIORS}) for i in range(cameras)]
        before = triton_inferences(server)
        start = time.time() - clip.times[-1] - 60
        with ThreadPoolExecutor(cameras) as pool:
            outcomes = list(pool.map(replay, repeat(api.url), made, repeat(clip), repeat(start), repeat(speed)))
        inferred_by_triton = triton_inferences(server) - before
        posted = sum(len(o) for o in outcomes)
        inferred = sum(not f["gated"] for o in outcomes for f in o)
        rows.append(
            {
                "clip": clip.name,
                "size": f"{clip.size[0]}x{clip.size[1]}",
                "cameras": cameras,
                "frames_posted": posted,
                "frames_inferred_triton": inferred_by_triton,
                "frames_inferred_api": inferred,
                "gated_fraction": round(1 - inferred_by_triton / posted, 3),
                "frames_from_change_to_inference": late_frames(clip, outcomes[0]) if clip.changes else None,
                "inferences_per_max_age": None,
            }
        )
        if clip.name == "static-noise":
            rows[-1]["inferences_per_max_age"] = round(inferred / cameras / (clip.times[-1] / 10.0), 2)
    return rows


def gate_sweep(
    clips: list[Clip], fractions: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03), deltas: tuple[int, ...] = (15, 20, 30)
) -> list[dict]:
    """The gate alone (no model: scores far from any threshold) over every clip, for each changed share and pixel
    delta: the inferred share per clip and the frames from each labelled change to its inference. What the defaults
    were chosen from."""
    thumbs = {
        clip.name: [
            gate.thumbnail(Frame(frame, max_bytes=len(frame)), GateSettings().thumbnail_height) for frame in clip.frames
        ]
        for clip in clips
    }
    rows = []
    for fraction in fractions:
        for delta in deltas:
            settings = GateSettings(changed_fraction=fraction, pixel_delta=delta)
            row: dict[str, Any] = {"changed_fraction": fraction, "pixel_delta": delta}
            for clip in clips:
                last, last_at, inferred, decisions = None, None, [], []
                for at, thumb in zip(clip.times, thumbs[clip.name]):
                    change = None if last is None else gate.changed_fraction(last, thumb, delta)
                    recent = sum(1 for t in inferred if at - t < 60)
                    decision = gate.decide(
                        settings,
                        at=at,
                        last_inferred_at=last_at,
                        inferred_last_minute=recent,
                        change=change,
                        uncertain=False,
                    )
                    decisions.append({"gated": not decision.infer})
                    if decision.infer:
                        last, last_at = thumb, at
                        inferred.append(at)
                row[clip.name] = {
                    "inferred": round(len(inferred) / len(clip.frames), 3),
                    "late": late_frames(clip, decisions),
                }
            rows.append(row)
    return rows


def cpu_ms(process: psutil.Process) -> tuple[float, float]:
    """The process's CPU-ms so far: (all of it, its event loop's thread alone). The main thread's id is the pid."""
    times = process.cpu_times()
    loop = next((t for t in process.threads() if t.id == process.pid), None)
    return (times.user + times.system) * 1000, 0.0 if loop is None else (loop.user_time + loop.system_time) * 1000


def luma_decode_ms(frames: list[bytes], height: int = 100) -> float:
    """CPU-ms per frame of the gate's reduced-scale luma decode alone, in this process: the part of a gated frame's
    cost that grows with the JPEG's size (its entropy decoding is paid whole at any DCT scale)."""
    started = time.process_time()
    for data in frames:
        Frame(data, max_bytes=len(data)).luma(height)
    return round((time.process_time() - started) * 1000 / len(frames), 2)


def thread_round_trip_cpu_ms(trips: int = 2000) -> float:
    """CPU-ms of one bare round trip to a worker thread and back (``run_in_executor`` of a no-op), in this process.

    A frame's store work runs in the service's thread pools: one hop for a gated frame, two for an inferred one.
    What a hop costs is set by the machine more than by Python (two threads woken, the event loop's self-pipe
    written and polled), and under nested virtualisation it can be as much as the store work it carries, so the
    cost section's figures are read beside this one when machines are compared."""

    async def trip(loop_trips: int) -> float:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            await loop.run_in_executor(pool, int)  # the thread is started outside the count
            started = time.process_time()
            for _ in range(loop_trips):
                await loop.run_in_executor(pool, int)
            return time.process_time() - started

    return round(asyncio.run(trip(trips)) * 1000 / trips, 3)


def _spread(values: list[float]) -> dict[str, float]:
    """A figure over rounds: its median, and its lowest and highest round."""
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def cost_frames(size: tuple[int, int], frames: int) -> tuple[list[bytes], tuple[bytes, bytes]]:
    """The cost figures' frames at ``size``: a still scene, posted in a cycle after its first (the baseline), each
    differing from it by its sensor noise alone; and a light that flips, every frame a change."""
    still = static_noise(SAMPLE, seconds=min(frames, 40) / 2 + 1, size=size).frames
    flipping = lighting(SAMPLE, size=size)
    return still, (flipping.frames[0], flipping.frames[flipping.changes[0]])


def cost_section(api: ApiProcess, sizes: list[tuple[int, int]], frames: int, rounds: int) -> list[dict]:
    """CPU-ms of the API process per frame: gated (a still scene), inferred (the light flips every frame), and the
    stateless /v1/frames on the same changing frames; and the store's time per frame from its histogram.

    In turns: each of ``rounds`` rounds posts ``frames`` of each kind, one kind after the other, and times the
    gate's luma decode of the still frames in this process, so that the machine's speed, which drifts by a third
    within minutes on a shared 2-core box, moves them all alike. Each figure is the median of its rounds, with the
    lowest and highest round beside it; the layer's cost per inferred frame is the median of each round's inferred
    minus its stateless figure. CPU time comes in 10 ms ticks, so a round holds enough frames for a few dozen of
    them."""
    return [_CostRun(api, size, frames).run(rounds) for size in sizes]


class _CostRun:
    """One frame size's cameras and frames, and the CPU time of each round of each kind."""

    def __init__(self, api: ApiProcess, size: tuple[int, int], frames: int) -> None:
        width = size[0]
        self.api, self.process, self.size, self.frames = api, psutil.Process(api.process.pid), size, frames
        self.still, self.flips = cost_frames(size, frames)
        behaviors = {b: {} for b in BEHAVIORS}
        self.gated_camera = add_camera(api.url, f"cost-gated-{width}", behaviors=behaviors, gate={"max_age_s": 3600})
        # Every flipped frame is inferred: its budget is lifted past the 2 frames/s it is sent at.
        self.inferred_camera = add_camera(
            api.url, f"cost-inferred-{width}", behaviors=behaviors, gate={"budget_per_minute": 1000}
        )
        self.clock = time.time() - 3600  # capture times, half a second apart, well in the past
        self.posted = 0
        self.rounds: dict[str, list[float]] = {
            "gated": [],
            "gated_event_loop": [],
            "inferred": [],
            "stateless": [],
            "livez": [],
            "luma": [],
        }
        self.answered = {"gated": 0, "inferred": 0}

    def _at(self) -> float:
        self.posted += 1
        return self.clock + self.posted / 2

    def _gated(self, client: httpx.Client, index: int) -> None:
        frame = self.still[1 + index % (len(self.still) - 1)]
        self.answered["gated"] += post_frame(client, self.api.url, self.gated_camera, frame, self._at())["gated"]

    def _inferred(self, client: httpx.Client, index: int) -> None:
        outcome = post_frame(client, self.api.url, self.inferred_camera, self.flips[index % 2], self._at())
        self.answered["inferred"] += not outcome["gated"]

    def _stateless(self, client: httpx.Client, index: int) -> None:
        client.post(
            f"{self.api.url}/v1/frames",
            content=self.flips[index % 2],
            params=[("behavior", b) for b in BEHAVIORS],
            headers=AUTH | {"Content-Type": "image/jpeg"},
            timeout=60,
        ).raise_for_status()

    def _livez(self, client: httpx.Client, index: int) -> None:
        client.get(f"{self.api.url}/livez", timeout=60).raise_for_status()

    def _round(self, client: httpx.Client, kind: str, post: Any) -> None:
        before = cpu_ms(self.process)
        for index in range(self.frames):
            post(client, index)
        after = cpu_ms(self.process)
        self.rounds[kind].append((after[0] - before[0]) / self.frames)
        if kind == "gated":
            self.rounds["gated_event_loop"].append((after[1] - before[1]) / self.frames)

    def _store_totals(self) -> tuple[float, ...]:
        """The store histogram's (sum of seconds, count of frames) so far."""
        return metrics(self.api.url, "blip_store_seconds_sum", "blip_store_seconds_count")

    def run(self, rounds: int) -> dict[str, Any]:
        with httpx.Client() as client:
            post_frame(client, self.api.url, self.gated_camera, self.still[0], self._at())  # the first is inferred
            store_before = self._store_totals()
            for _ in range(rounds):
                self._round(client, "gated", self._gated)
                self._round(client, "inferred", self._inferred)
                self._round(client, "stateless", self._stateless)
                self._round(client, "livez", self._livez)
                self.rounds["luma"].append(luma_decode_ms(self.still[1:]))
            store_after = self._store_totals()
        total = self.frames * rounds
        layer = [i - s for i, s in zip(self.rounds["inferred"], self.rounds["stateless"])]
        luma, livez = _spread(self.rounds["luma"]), _spread(self.rounds["livez"])
        return {
            "size": f"{self.size[0]}x{self.size[1]}",
            "frames": self.frames,
            "rounds": rounds,
            "gated_cpu_ms": _spread(self.rounds["gated"]),
            "gated_event_loop_ms": _spread(self.rounds["gated_event_loop"]),
            "luma_decode_ms": luma,
            # The least a gated frame of this size can cost on this machine, whatever the layer does: its luma
            # decode and the API's cheapest request, each at its lowest round.
            "gated_floor_ms": round(luma["min"] + livez["min"], 2),
            "gated_share": round(self.answered["gated"] / total, 3),
            "inferred_cpu_ms": _spread(self.rounds["inferred"]),
            "inferred_share": round(self.answered["inferred"] / total, 3),
            "stateless_cpu_ms": _spread(self.rounds["stateless"]),
            "layer_ms_per_inferred_frame": _spread(layer),
            "livez_cpu_ms": livez,
            "store_ms_per_frame": round(
                1000 * (store_after[0] - store_before[0]) / max(store_after[1] - store_before[1], 1), 3
            ),
        }


def api_defaults(config: Path) -> EventDefaults:
    """What the API process under measurement falls back on for every camera: its config's event defaults."""
    return ApiSettings.load(config, env={TOKEN_ENV: TOKEN}).events


async def _stand_in(frame: Frame, questions: list[str]) -> Scored:
    """The fleet of the in-process figures: every question scores 0.2 (no event starts), answered at once."""
    return Scored([0.2] * len(questions), "stand-in", 1)


def in_process_section(defaults: EventDefaults, sizes: list[tuple[int, int]], frames: int, rounds: int) -> list[dict]:
    """The event layer alone: ``CameraService.process`` on SQLite in this process, with its two thread pools, the
    fleet a stand-in that answers at once, and no HTTP. CPU-ms of this process per gated and per inferred frame, on
    the cost section's frames and cameras and in its turns (gated, then inferred, each round). Beside the API
    process's figures, it tells the layer's own share of a frame from the HTTP tier's."""
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(f"sqlite:///{Path(scratch) / 'events.sqlite3'}")
        store.migrate()
        service = CameraService(store, defaults, EventMetrics(CollectorRegistry(), sorted(defaults.questions)))
        try:
            return asyncio.run(_in_process(service, sizes, frames, rounds))
        finally:
            service.close()
            store.close()


async def _in_process(service: CameraService, sizes: list[tuple[int, int]], frames: int, rounds: int) -> list[dict]:
    behaviors = {name: ThresholdsPatch() for name in BEHAVIORS}
    rows, at = [], time.time() - 3600  # capture times, half a second apart, well in the past

    async def post(camera: str, data: bytes) -> bool:
        nonlocal at
        at += 0.5
        return (await service.process(camera, Frame(data, max_bytes=len(data)), at, _stand_in)).gated

    for width, height in sizes:
        still, flips = cost_frames((width, height), frames)
        gated_camera, inferred_camera = f"in-process-gated-{width}", f"in-process-inferred-{width}"
        for camera, gate_patch in (
            (gated_camera, GatePatch(max_age_s=3600)),
            (inferred_camera, GatePatch(budget_per_minute=1000)),
        ):
            await service.put_camera(camera, CameraPatch(behaviors=behaviors, gate=gate_patch), rotate=False)
        await post(gated_camera, still[0])  # the first frame is inferred: the baseline
        spent: dict[str, list[float]] = {"gated": [], "inferred": []}
        answered = {"gated": 0, "inferred": 0}
        for _ in range(rounds):
            for kind, camera, cycle in (("gated", gated_camera, still[1:]), ("inferred", inferred_camera, flips)):
                started = time.process_time()
                for index in range(frames):
                    gated = await post(camera, cycle[index % len(cycle)])
                    answered[kind] += gated if kind == "gated" else not gated
                spent[kind].append((time.process_time() - started) * 1000 / frames)
        total = frames * rounds
        rows.append(
            {
                "size": f"{width}x{height}",
                "frames": frames,
                "rounds": rounds,
                "gated_cpu_ms": _spread(spent["gated"]),
                "gated_share": round(answered["gated"] / total, 3),
                "inferred_cpu_ms": _spread(spent["inferred"]),
                "inferred_share": round(answered["inferred"] / total, 3),
            }
        )
    return rows


def durability(
    server: TritonServer, work: Path, kills: int = 5, frames: int = 120, flip_every: int = 12, seed: int = 3
) -> dict[str, Any]:
    """A camera replayed while its API is SIGKILLed ``kills`` times and the receiver fails every other request;
    the camera's thresholds flip every ``flip_every`` frames so that events start and end throughout."""
    rng = random.Random(seed)
    db = work / "events.sqlite3"
    sections = {
        "webhooks": {
            "allow_insecure": True,
            "timeout_s": 2.0,
            "lease_s": 3.0,
            "first_retry_s": 0.5,
            "poll_interval_s": 0.1,
        },
        "events": {"cutoff_s": 1.0, "cooldown_s": 0.0, "min_frames": 2},
        "gate": {"max_age_s": 0.4},
    }
    config = write_api_config(
        work / "api.toml", {"fleet": server.http_url}, probe_interval_s=QUIET_ROUTER, sections=sections
    )
    low, high = {"barking": {"enter": 0.001, "exit": 0.001}}, {"barking": {"enter": 0.9999, "exit": 0.9999}}
    kill_at = sorted(rng.sample(range(5, frames - 5), kills))
    frame_bytes = static_noise(SAMPLE, seconds=2).frames
    start = time.time() - frames
    with Receiver(fail_every=2) as receiver:
        api = ApiProcess(config, work / "api.log", db_url=f"sqlite:///{db}")
        camera = add_camera(api.url, "durable", behaviors=low, webhook_url=receiver.url)
        killed = 0
        with httpx.Client() as client:
            for index in range(frames):
                if index and index % flip_every == 0:
                    thresholds = high if (index // flip_every) % 2 else low
                    httpx.put(
                        f"{api.url}/admin/cameras/durable", json={"behaviors": thresholds}, headers=ADMIN, timeout=30
                    )
                if index in kill_at:
                    os.kill(api.process.pid, signal.SIGKILL)
                    api.process.wait()
                    killed += 1
                    api = ApiProcess(config, work / "api.log", db_url=f"sqlite:///{db}")
                post_frame(client, api.url, camera, frame_bytes[index % 2], start + index * 0.5)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = httpx.get(
                f"{api.url}/admin/deliveries", params={"state": "pending"}, headers=ADMIN, timeout=10
            ).json()
            if not pending["deliveries"]:
                break
            time.sleep(0.5)
        api.stop()
        received = receiver.all()
    with sqlite3.connect(db) as connection:
        events = connection.execute("SELECT id, state FROM events").fetchall()
        created = dict(connection.execute("SELECT id, created_at FROM deliveries").fetchall())
        dead = connection.execute("SELECT count(*) FROM deliveries WHERE state != 'sent'").fetchone()[0]
    delivered: dict[tuple[str, str], set[str]] = {}
    bodies: dict[str, set[bytes]] = {}
    first_ok: dict[str, float] = {}
    for item in received:
        body = json.loads(item.body)
        key = item.headers["idempotency-key"]
        bodies.setdefault(key, set()).add(item.body)
        if item.status == 200:
            delivered.setdefault((body["event"]["id"], body["kind"]), set()).add(key)
            first_ok.setdefault(key, item.at)
    wanted = [(event_id, "started") for event_id, _ in events] + [
        (e, "ended") for e, state in events if state == "ended"
    ]
    lost = [pair for pair in wanted if pair not in delivered]
    delays = [first_ok[key] - created[key] for key in first_ok if key in created]
    return {
        "kills": killed,
        "frames": frames,
        "events": len(events),
        "deliveries_expected": len(wanted),
        "requests_received": len(received),
        "requests_failed_by_receiver": sum(r.status != 200 for r in received),
        "lost": len(lost),
        "not_sent_in_store": dead,
        "one_key_per_change": all(len(keys) == 1 for keys in delivered.values()),
        "one_body_per_key": all(len(b) == 1 for b in bodies.values()),
        "duplicates_delivered": sum(1 for r in received if r.status == 200) - len(first_ok),
        "oldest_delivery_delay_s": round(max(delays), 2) if delays else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench-events", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", type=int, default=4, help="cameras replaying each clip at once")
    parser.add_argument("--speed", type=float, default=10.0, help="replay N times faster than capture (0: unpaced)")
    parser.add_argument("--cost-frames", type=int, default=60, help="frames of each kind in one cost round")
    parser.add_argument("--cost-rounds", type=int, default=5, help="cost rounds, each kind in turn")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--corpus-cameras", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL store figures")
    parser.add_argument("--workspace", type=Path, default=ROOT / ".bench" / "events")
    parser.add_argument("--out", type=Path, default=RESULTS / "events-cpu.json")
    args = add_version_option(parser).parse_args(argv)

    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "model": "random-tiny (the API tier and the store are measured)"}
    results["thread_round_trip_cpu_ms"] = thread_round_trip_cpu_ms()
    print("thread round trip:", results["thread_round_trip_cpu_ms"], "CPU-ms", flush=True)
    results["alert_quality"] = score_corpus.judge(cameras=args.corpus_cameras)
    print("alert quality:", json.dumps(results["alert_quality"]), flush=True)
    results["gate_sweep"] = gate_sweep(made_clips(SAMPLE) + shared_clips(SHARED_CLIPS))
    for row in results["gate_sweep"]:
        print("gate sweep:", json.dumps(row), flush=True)
    workspace = prepare("random-tiny", "cpu", root=args.workspace)
    server = TritonServer(workspace.repository, "cpu", layout="colocated")
    server.start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            config = write_api_config(work / "api.toml", {"fleet": server.http_url}, probe_interval_s=QUIET_ROUTER)
            api = ApiProcess(config, work / "api.log", db_url=f"sqlite:///{work / 'events.sqlite3'}")
            try:
                clips = made_clips(SAMPLE) + shared_clips(SHARED_CLIPS)
                results["gate"] = gate_section(api, server, clips, args.cameras, args.speed)
                for row in results["gate"]:
                    print("gate:", json.dumps(row), flush=True)
                results["cost_sqlite"] = cost_section(
                    api, [(640, 360), (1920, 1080)], args.cost_frames, args.cost_rounds
                )
                for row in results["cost_sqlite"]:
                    print("cost (SQLite):", json.dumps(row), flush=True)
            finally:
                api.stop()
            results["in_process"] = in_process_section(
                api_defaults(config), [(640, 360), (1920, 1080)], args.cost_frames, args.cost_rounds
            )
            for row in results["in_process"]:
                print("event layer in process (SQLite, no HTTP):", json.dumps(row), flush=True)
            if not args.no_postgres:
                with postgres_server() as url:
                    api = ApiProcess(config, work / "api-pg.log", db_url=url)
                    try:
                        results["cost_postgresql"] = cost_section(api, [(640, 360)], args.cost_frames, args.cost_rounds)
                    finally:
                        api.stop()
                for row in results["cost_postgresql"]:
                    print("cost (PostgreSQL):", json.dumps(row), flush=True)
            durable = work / "durability"
            durable.mkdir()
            results["durability"] = durability(server, durable, kills=args.kills)
            print("nothing lost:", json.dumps(results["durability"]), flush=True)
    finally:
        server.stop()
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
