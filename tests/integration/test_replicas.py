"""Two API replicas (real ``blip-api`` processes) share one PostgreSQL server: 16 cameras post at once, each
camera's frames sent to both replicas concurrently. The camera's row lock serializes them: every frame is answered
(late ones from the state), each camera's processed frames advance in capture order, and no event is duplicated."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import create_engine, text

from blip_bench.frames import SAMPLE
from blip_bench.stack import ADMIN, ApiProcess, write_api_config
from blip_images.clips import static_noise

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
