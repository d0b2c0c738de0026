"""Two API replicas share one PostgreSQL server.

- Real ``blip-api`` processes: 16 cameras post at once, each camera's frames sent to both replicas concurrently. The
  camera's row lock serializes them: every frame is answered (late ones from the state), each camera's processed
  frames advance in capture order, and no event is duplicated.
- Two ``CameraService`` instances, each on its own event loop (as in two processes), with frames of each waiting for
  rows the other holds across an inference: the frames that hold a row always get a thread for their writes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from blip_bench.frames import SAMPLE
from blip_bench.stack import ADMIN, ApiProcess, write_api_config
from blip_events.metrics import EventMetrics
from blip_events.service import CameraService, Scored
from blip_events.settings import CameraPatch, EventDefaults
from blip_events.store import Store
from blip_images.clips import static_noise
from blip_images.frame import Frame

CAMERAS = 16
FRAMES = 8


@pytest.fixture(scope="module")
def fleet(colocated_fleet):
    return colocated_fleet


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def test_two_replicas_on_one_postgresql_keep_every_cameras_order_and_no_event_twice(
    fleet, postgres_url, tmp_path
) -> None:
    config = write_api_config(tmp_path / "api.toml", {"fleet": fleet.http_url}, probe_interval_s=5.0)
    replicas = [ApiProcess(config, tmp_path / f"api-{n}.log", db_url=postgres_url) for n in range(2)]
    try:
        tokens = {}
        for index in range(CAMERAS):
            camera = f"cam-{index:02d}"
            body = {"behaviors": {"barking": {"enter": 0.001, "exit": 0.001}}, "gate": {"max_age_s": 0.1}}
            response = httpx.put(
                f"{replicas[index % 2].url}/admin/cameras/{camera}", json=body, headers=ADMIN, timeout=10
            )
            assert response.status_code == 201, response.text
            tokens[camera] = response.json()["token"]
        frame = static_noise(SAMPLE, seconds=1).frames[0]
        start = time.time() - 120
        answers: dict[str, list[dict]] = {camera: [] for camera in tokens}
        lock = threading.Lock()

        def send(camera: str, index: int, replica: ApiProcess) -> None:
            response = httpx.post(
                f"{replica.url}/v1/cameras/{camera}/frames",
                content=frame,
                params={"captured_at": rfc3339(start + index * 0.5)},
                headers={"Authorization": f"Bearer {tokens[camera]}", "Content-Type": "image/jpeg"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            with lock:
                answers[camera].append(response.json())

        # Frame i of every camera goes to both replicas at once, i and i + 0.5 s apart in capture time.
        with ThreadPoolExecutor(32) as pool:
            for index in range(0, FRAMES, 2):
                jobs = [
                    pool.submit(send, camera, index + offset, replicas[offset])
                    for camera in tokens
                    for offset in (0, 1)
                ]
                for job in jobs:
                    job.result()
        with create_engine(postgres_url).connect() as connection:
            events = connection.execute(text("SELECT camera_id, count(*) FROM events GROUP BY camera_id")).all()
            states = dict(connection.execute(text("SELECT id, state FROM cameras")).all())
            deliveries = connection.execute(text("SELECT count(*) FROM deliveries")).scalar()
        assert sorted(events) == [(camera, 1) for camera in sorted(tokens)], "one event per camera, never two"
        assert deliveries == 0, "no webhook_url: nothing to deliver"
        for camera, seen in answers.items():
            assert len(seen) == FRAMES
            processed = sorted(a["captured_at"] for a in seen if not a["late"])
            assert processed, camera
            last = datetime.fromisoformat(processed[-1].replace("Z", "+00:00")).timestamp()
            assert states[camera]["last_captured_at"] == pytest.approx(last, abs=0.002), "the newest frame won"
            assert all(a["late"] for a in seen if a["captured_at"] < processed[0]), camera
    finally:
        for replica in replicas:
            replica.stop()


class Replica:
    """One replica's event layer on an event loop of its own, in a thread: a process's loop and its default
    executor (2 threads, fewer than the frames that wait here, as ``asyncio.to_thread``'s pool is on a small host)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(2, thread_name_prefix="default"))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.store = Store(f"{url}?application_name={APPLICATION}", pool_size=4)
        self.store.migrate()
        defaults = EventDefaults(thresholds={"barking": 0.5}, questions={"barking": "Is the dog barking?"})
        self.service = CameraService(self.store, defaults, EventMetrics(CollectorRegistry()))

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.service.close()
        self.store.close()


APPLICATION = "replica-test"  # the replicas' connections, by name in pg_stat_activity


def lock_waits(url: str) -> int:
    with create_engine(url).connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = :name"),
            {"name": APPLICATION},
        ).scalar_one()


def test_frames_waiting_for_a_cameras_row_never_take_the_threads_that_its_holder_needs(postgres_url) -> None:
    """Replica A holds cameras a-0..a-2 across an inference, replica B holds b-0..b-2; then each sends a frame to
    every camera the other holds, and those wait for the row locks. When they waited in the pool that the holders'
    writes also need, both replicas' pools were all waiting and neither moved again: the 60 s read timeout CI saw
    in the test above. Every frame must be answered."""
    replicas = {side: Replica(postgres_url) for side in "ab"}
    held = {side: [f"starve-{side}-{n}" for n in range(3)] for side in "ab"}
    frame = Frame(static_noise(SAMPLE, seconds=1).frames[0], max_bytes=20 * 2**20)
    entered = threading.Semaphore(0)
    released = {side: asyncio.Event() for side in "ab"}
    start = time.time() - 60

    def held_across(side: str) -> Callable[[Frame, list[str]], Awaitable[Scored]]:
        async def infer(image: Frame, questions: list[str]) -> Scored:
            entered.release()
            await released[side].wait()
            return Scored([0.1] * len(questions), "stand-in", 1)

        return infer

    async def answer(image: Frame, questions: list[str]) -> Scored:
        return Scored([0.1] * len(questions), "stand-in", 1)

    try:
        for side, replica in replicas.items():
            for camera in held[side]:
                replica.run(replica.service.put_camera(camera, CameraPatch(), rotate=False)).result(10)
        holding = [
            replica.run(replica.service.process(camera, frame, start, held_across(side)))
            for side, replica in replicas.items()
            for camera in held[side]
        ]
        for _ in holding:
            assert entered.acquire(timeout=20), "every holder reaches its inference with its row locked"
        waiting = [
            replicas[side].run(replicas[side].service.process(camera, frame, start + 0.5, answer))
            for side, other in (("a", "b"), ("b", "a"))
            for camera in held[other]
        ]
        # At least as many waits as both default executors have threads (more where the frames have pools of
        # their own), then a moment for the rest to queue.
        deadline = time.monotonic() + 20
        while lock_waits(postgres_url) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock_waits(postgres_url) >= 4, "the second frames wait for their cameras' rows"
        time.sleep(0.5)
        for side, replica in replicas.items():
            replica.loop.call_soon_threadsafe(released[side].set)
        try:
            outcomes = [future.result(30) for future in holding + waiting]
        except TimeoutError:
            pytest.fail(f"frames still unanswered after 30 s, {lock_waits(postgres_url)} waiting for a row lock")
        assert [o.gated for o in outcomes] == [False] * len(holding) + [True] * len(waiting)
        assert all(not o.late for o in outcomes)
    finally:
        for replica in replicas.values():
            replica.loop.call_soon_threadsafe(replica.loop.stop)
        remove(postgres_url, held["a"] + held["b"])
        for replica in replicas.values():
            replica.close()


def remove(url: str, cameras: list[str]) -> None:
    """Delete the test's cameras; after a stuck run, first end the replicas' sessions (their waits, and any row
    lock a frame took while its loop was stopping), as often as it takes."""
    engine = create_engine(url)
    try:
        for _ in range(20):
            with engine.begin() as connection:
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": APPLICATION},
                )
            try:
                with engine.begin() as connection:  # events, deliveries and changes go with it (ON DELETE CASCADE)
                    connection.execute(text("SET LOCAL lock_timeout = '1s'"))
                    connection.execute(text("DELETE FROM cameras WHERE id = ANY(:cameras)"), {"cameras": cameras})
                return
            except OperationalError:
                time.sleep(0.2)
        raise RuntimeError(f"cameras {cameras} could not be removed")
    finally:
        engine.dispose()
