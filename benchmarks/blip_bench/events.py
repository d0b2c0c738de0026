"""``make bench-events``: the event layer measured through the real API tier (``blip-api`` processes) and a real
fleet (Triton, random-tiny: what is measured is the API tier and the store, not the model).

1. **Gate**: each clip (the project's own, and ``../shared/clips`` where present) replayed by M concurrent cameras
   at its capture times, N times faster: frames posted, frames inferred (Triton's own count), the gated share, and
   the frames from each labelled scene change to its first inference.
2. **Cost**: API CPU-ms per gated and per inferred frame at 640x360 and 1920x1080 (the process's own CPU time),
   against the stateless ``/v1/frames`` on the same frames; store time per frame on SQLite and on PostgreSQL; and
   the gate's luma decode alone (in this process), the share of a gated frame that grows with the JPEG.
3. **Alert quality**: the labelled score corpus (``score_corpus``): event recall and precision, notifications per
   camera-hour against per-frame alerts.
4. **Nothing lost**: the API killed with SIGKILL during a replay while the webhook receiver fails every other
   request: every event's ``started`` and ``ended`` arrive, each under one idempotency key.

Writes ``benchmarks/results/events-cpu.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
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
from prometheus_client.parser import text_string_to_metric_families

from blip_bench import score_corpus
from blip_bench.frames import ROOT, SAMPLE, SHARED_CLIPS
from blip_bench.machine import machine
from blip_bench.postgres import postgres_server
from blip_bench.receiver import Receiver
from blip_bench.stack import ADMIN, AUTH, ApiProcess, write_api_config
from blip_bench.workspace import prepare
from blip_contract.version import add_version_option
from blip_events import gate
from blip_events.settings import GateSettings
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


def metric(api_url: str, name: str) -> float:
    text = httpx.get(f"{api_url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


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


def cpu_ms(process: psutil.Process) -> float:
    times = process.cpu_times()
    return (times.user + times.system) * 1000


def luma_decode_ms(frames: list[bytes], height: int = 100) -> float:
    """CPU-ms per frame of the gate's reduced-scale luma decode alone, in this process: the part of a gated frame's
    cost that grows with the JPEG's size (its entropy decoding is paid whole at any DCT scale)."""
    started = time.process_time()
    for data in frames:
        Frame(data, max_bytes=len(data)).luma(height)
    return round((time.process_time() - started) * 1000 / len(frames), 2)


def cost_section(api: ApiProcess, sizes: list[tuple[int, int]], frames: int) -> list[dict]:
    """CPU-ms of the API process per frame: gated (a still scene), inferred (the light flips every frame), and the
    stateless /v1/frames on the same changing frames; and the store's time per frame from its histogram."""
    process = psutil.Process(api.process.pid)
    rows = []
    for width, height in sizes:
        still = static_noise(SAMPLE, seconds=frames / 2 + 1, size=(width, height))
        flipping = lighting(SAMPLE, size=(width, height))
        bright, dim = flipping.frames[0], flipping.frames[flipping.changes[0]]
        changing = [bright if i % 2 == 0 else dim for i in range(frames)]
        gated_camera = add_camera(
            api.url, f"cost-gated-{width}", behaviors={b: {} for b in BEHAVIORS}, gate={"max_age_s": 3600}
        )
        inferred_camera = add_camera(api.url, f"cost-inferred-{width}", behaviors={b: {} for b in BEHAVIORS})
        start = time.time() - 3 * frames
        figures: dict[str, Any] = {"size": f"{width}x{height}", "frames": frames}
        with httpx.Client() as client:
            post_frame(client, api.url, gated_camera, still.frames[0], start)  # the first frame is inferred
            store_before = (metric(api.url, "blip_store_seconds_sum"), metric(api.url, "blip_store_seconds_count"))
            before = cpu_ms(process)
            outcomes = [
                post_frame(client, api.url, gated_camera, f, start + 0.5 * (i + 1))
                for i, f in enumerate(still.frames[1 : frames + 1])
            ]
            figures["gated_cpu_ms"] = round((cpu_ms(process) - before) / frames, 2)
            figures["luma_decode_ms"] = luma_decode_ms(still.frames[1 : frames + 1])
            figures["gated_share"] = round(sum(o["gated"] for o in outcomes) / frames, 3)
            before = cpu_ms(process)
            outcomes = [
                post_frame(client, api.url, inferred_camera, f, start + 0.5 * i) for i, f in enumerate(changing)
            ]
            figures["inferred_cpu_ms"] = round((cpu_ms(process) - before) / frames, 2)
            figures["inferred_share"] = round(sum(not o["gated"] for o in outcomes) / frames, 3)
            store_after = (metric(api.url, "blip_store_seconds_sum"), metric(api.url, "blip_store_seconds_count"))
            figures["store_ms_per_frame"] = round(
                1000 * (store_after[0] - store_before[0]) / max(store_after[1] - store_before[1], 1), 3
            )
            params = [("behavior", b) for b in BEHAVIORS]
            before = cpu_ms(process)
            for frame in changing:
                client.post(
                    f"{api.url}/v1/frames",
                    content=frame,
                    params=params,
                    headers=AUTH | {"Content-Type": "image/jpeg"},
                    timeout=60,
                ).raise_for_status()
            figures["stateless_cpu_ms"] = round((cpu_ms(process) - before) / frames, 2)
        figures["layer_ms_per_inferred_frame"] = round(figures["inferred_cpu_ms"] - figures["stateless_cpu_ms"], 2)
        rows.append(figures)
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
    parser.add_argument("--cost-frames", type=int, default=40)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--corpus-cameras", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL store figures")
    parser.add_argument("--workspace", type=Path, default=ROOT / ".bench" / "events")
    parser.add_argument("--out", type=Path, default=RESULTS / "events-cpu.json")
    args = add_version_option(parser).parse_args(argv)

    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "model": "random-tiny (the API tier and the store are measured)"}
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
                results["cost_sqlite"] = cost_section(api, [(640, 360), (1920, 1080)], args.cost_frames)
                for row in results["cost_sqlite"]:
                    print("cost (SQLite):", json.dumps(row), flush=True)
            finally:
                api.stop()
            if not args.no_postgres:
                with postgres_server() as url:
                    api = ApiProcess(config, work / "api-pg.log", db_url=url)
                    try:
                        results["cost_postgresql"] = cost_section(api, [(640, 360)], args.cost_frames)
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
