"""The API tier's log as an operator reads it: a real ``blip-api`` process under ``BLIP_LOG_JSON=1`` in front of a
real fleet. Every line of its stderr, uvicorn's own included, is one JSON object, and each request has one access
line with its method, route, status, camera, backend, attempts, latency and request id."""

from __future__ import annotations

import json

import httpx
import pytest

from blip_bench.stack import ADMIN, AUTH, ApiProcess, write_api_config
from tests.integration.test_api import PHOTO


@pytest.fixture
def json_api(triton, tmp_path):
    config = write_api_config(tmp_path / "api.toml", {"neuron": triton.http_url})
    process = ApiProcess(config, env={"BLIP_LOG_JSON": "1", "BLIP_LOG_LEVEL": "info"})
    yield process
    process.stop()


def test_every_line_is_json_and_every_request_has_one_access_line(json_api) -> None:
    url = json_api.url
    frame = httpx.post(
        f"{url}/v1/frames",
        content=PHOTO.read_bytes(),
        params={"behavior": "barking"},
        headers=AUTH | {"Content-Type": "image/jpeg", "X-Request-ID": "frame-1"},
        timeout=30,
    )
    assert frame.status_code == 200, frame.text
    missing = httpx.get(f"{url}/v1/nowhere", headers=AUTH | {"X-Request-ID": "lost-1"}, timeout=5)
    refused = httpx.put(
        f"{url}/admin/cameras/porch", json={"behaviours": ["barking"]}, headers=ADMIN | {"X-Request-ID": "cam-1"}
    )
    httpx.get(f"{url}/healthz", timeout=5)
    assert (missing.status_code, refused.status_code) == (404, 422)
    json_api.stop()

    lines = json_api.log.read_text().splitlines()
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a line of blip-api's stderr is not JSON: {line[:300]}")
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert "uvicorn.error" in loggers, f"uvicorn's own lines go through the same setup: {loggers}"
    assert any("Application startup complete" in entry["message"] for entry in entries)

    access = {entry.get("request_id"): entry for entry in entries if entry["logger"] == "blip_api.access"}
    answered = access["frame-1"]
    assert answered["route"] == "/v1/frames" and answered["method"] == "POST" and answered["status"] == 200
    assert answered["backend"] == "neuron" and answered["attempts"] == 1
    assert answered["latency_ms"] > 0
    assert access["lost-1"]["status"] == 404 and access["lost-1"]["route"] == "/v1/nowhere"
    camera = access["cam-1"]
    assert camera["route"] == "/admin/cameras/{camera_id}" and camera["camera"] == "porch"
    assert camera["status"] == 422 and camera["backend"] is None
    assert sum(entry["logger"] == "blip_api.access" for entry in entries) == 3, "probes are logged at DEBUG only"
