"""The API tier in front of the real Triton server: answers, auth, limits, bad input, no backend, OpenAPI.

The app runs in-process (FastAPI's TestClient, the real ASGI app with its lifespan), its router talks HTTP to
the session's tritonserver. One fleet is a real server, the other a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from blip_api.app import create_app
from blip_api.settings import DEFAULT_BEHAVIORS, ApiSettings
from blip_client.async_client import AsyncBlipVqaClient
from blip_client.client import BlipVqaClient
from blip_client.errors import InvalidRequestError
from blip_contract.logs import RequestIdFilter
from blip_serving.capacity import SCALING_METRIC
from blip_serving.triton.process import TritonServer, free_port
from tests.conftest import INVALID_IMAGES, ROOT, VALID_IMAGES
from tests.unit.test_kubernetes import objects

TOKEN, ADMIN_TOKEN = "camera-token", "admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 150_000  # bytes: noise_large.jpg (about 200 kB) is over it, photo.jpg under
PHOTO = next(p for p in VALID_IMAGES if p.name == "photo.jpg")
# The apps here serve no camera, but each opens the event store: in a temporary folder, never in the checkout,
# removed when the test process exits (the object's finalizer).
EVENT_DIR = tempfile.TemporaryDirectory(prefix="blip-test-events-")
EVENT_STORE = f"sqlite:///{Path(EVENT_DIR.name) / 'events.sqlite3'}"


def settings_for(urls: dict[str, str], probe_interval_s: float = 0.5) -> ApiSettings:
    return ApiSettings.from_dict(
        {
            "router": {"probe_interval_s": probe_interval_s, "request_timeout_s": 20.0},
            "backends": {name: {"url": url} for name, url in urls.items()},
            "api": {"max_image_bytes": LIMIT, "max_questions": 4},
        },
        env={"BLIP_API_TOKEN": TOKEN, "BLIP_API_ADMIN_TOKEN": ADMIN_TOKEN, "BLIP_DB_URL": EVENT_STORE},
    )


@pytest.fixture(scope="module")
def api(triton):
    app = create_app(settings_for({"neuron": triton.http_url, "gpu": f"127.0.0.1:{free_port()}"}))
    with TestClient(app) as client:
        yield client


def post_raw(api, image: bytes, headers=AUTH, **params):
    return api.post("/v1/frames", content=image, params=params, headers=headers | {"Content-Type": "image/jpeg"})


def test_a_frame_gets_one_result_per_behavior_equal_to_transformers(api, tiny_reference) -> None:
    path = PHOTO
    response = api.post(
        "/v1/frames",
        files={"image": (path.name, path.read_bytes(), "image/jpeg")},
        data={"behavior": ["barking", "sleeping"], "question": ["what is the animal doing?"]},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    asked = [DEFAULT_BEHAVIORS["barking"], DEFAULT_BEHAVIORS["sleeping"], "what is the animal doing?"]
    assert [r["question"] for r in body["results"]] == asked
    assert [r["behavior"] for r in body["results"]] == ["barking", "sleeping", None]
    assert [r["answer"] for r in body["results"]] == [tiny_reference.answer(path, q) for q in asked]
    scores = [r["score"] for r in body["results"]]
    assert scores == pytest.approx([tiny_reference.score(path, q) for q in asked], abs=1e-5)
    assert all(r["alert"] == (r["score"] >= 0.5) for r in body["results"])
    assert body["backend"] == "neuron" and body["attempts"] >= 1

    raw = post_raw(api, path.read_bytes(), behavior=["barking", "sleeping"], question="what is the animal doing?")
    assert raw.status_code == 200, raw.text
    # The same answers; a score may differ in its last rounded digit, as the server batches the two requests apart.
    without_score = [{k: v for k, v in r.items() if k != "score"} for r in body["results"]]
    assert [{k: v for k, v in r.items() if k != "score"} for r in raw.json()["results"]] == without_score
    assert [r["score"] for r in raw.json()["results"]] == pytest.approx(scores, abs=1e-5)


def test_behaviors_alone_are_scored_in_one_step_and_alert_on_the_threshold(api, tiny_reference) -> None:
    response = post_raw(api, PHOTO.read_bytes(), behavior=["barking", "eating"])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = [tiny_reference.score(PHOTO, DEFAULT_BEHAVIORS[b]) for b in ("barking", "eating")]
    assert [r["answer"] for r in results] == [None, None], "scores only: no generated text"
    assert [r["score"] for r in results] == pytest.approx(expected, abs=1e-5)
    assert [r["alert"] for r in results] == [s >= 0.5 for s in expected]


def test_without_the_right_token_nothing_is_answered(api) -> None:
    image = PHOTO.read_bytes()
    missing = post_raw(api, image, headers={}, behavior="barking")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert post_raw(api, image, headers={"Authorization": "Bearer nope"}, behavior="barking").status_code == 401
    assert api.get("/admin/backends", headers=AUTH).status_code == 401, "the camera token is not an admin token"
    assert api.get("/admin/backends", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


def test_an_oversize_body_is_refused_with_413_declared_or_streamed(api) -> None:
    big = next(p for p in VALID_IMAGES if p.stat().st_size > LIMIT).read_bytes()
    declared = post_raw(api, big, behavior="barking")
    assert declared.status_code == 413 and str(LIMIT) in declared.json()["error"]

    def chunks():
        for start in range(0, len(big), 16384):
            yield big[start : start + 16384]

    streamed = api.post(
        "/v1/frames", content=chunks(), params={"behavior": "barking"}, headers=AUTH | {"Content-Type": "image/jpeg"}
    )
    assert streamed.status_code == 413, streamed.text


def inferences(triton) -> int:
    """Requests the fleet's models have run, all of them. A request a Python stub refuses counts too (Triton
    counts the execute), so a bad frame that reached the fleet would add one."""
    with BlipVqaClient(triton.http_url) as fleet:
        stats = fleet._client.get_inference_statistics()["model_stats"]
    return sum(int(model.get("inference_count", 0)) for model in stats)


@pytest.fixture(scope="module")
def quiet_fleet(tiny_build, triton):
    """A fleet of its own in the session's layout, which only ``quiet_api`` calls: the other apps of this module
    probe the session's fleet every half second."""
    with TritonServer(tiny_build.repository, "cpu", layout=triton.layout.name) as server:
        yield server


@pytest.fixture(scope="module")
def quiet_api(quiet_fleet):
    """The API tier with its probes an hour apart after the first: the fleet's counts move only with the test's
    own requests (a refused frame asks for no probe: it is the caller's fault, not the fleet's)."""
    app = create_app(settings_for({"neuron": quiet_fleet.http_url}, probe_interval_s=3600))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("path", INVALID_IMAGES, ids=lambda p: p.name)
def test_a_bad_image_is_400_with_the_fleets_own_reason_before_any_fleet_call(quiet_api, quiet_fleet, path) -> None:
    data = path.read_bytes()
    before = inferences(quiet_fleet)
    response = post_raw(quiet_api, data, behavior="barking")
    assert response.status_code == 400, response.text
    assert inferences(quiet_fleet) == before, "refused in the API tier: the fleet never saw it"
    if not data:  # an empty body never reaches the image checks
        assert "image is empty" in response.text
        return
    with BlipVqaClient(quiet_fleet.http_url) as fleet, pytest.raises(InvalidRequestError) as refused:
        fleet.scores(data, ["Is the dog barking?"])  # what a direct tritonclient caller is told
    message = response.json()["error"]
    assert message.startswith("IMAGE ") and message in str(refused.value), (message, str(refused.value))


def test_bad_requests_are_named(api) -> None:
    image = PHOTO.read_bytes()
    cases = {
        "ask at least one question": post_raw(api, image),
        "5 questions; at most 4": post_raw(api, image, question=["a?"] * 5),
        "unknown behavior(s) ['howling']": post_raw(api, image, behavior="howling"),
        "a question is empty": post_raw(api, image, question=" "),
        "a question has 201 characters": post_raw(api, image, question="a" * 201),
        "the image is empty": post_raw(api, b"", behavior="barking"),
        "no 'image' file field": api.post(
            "/v1/frames", data={"behavior": "barking"}, files={"image": (None, b"not a file")}, headers=AUTH
        ),
        "unknown multipart field(s) ['x']": api.post(
            "/v1/frames", data={"behavior": "barking"}, files={"x": ("x", b"1")}, headers=AUTH
        ),
    }
    for message, response in cases.items():
        assert response.status_code == 400 and message in response.json()["error"], (message, response.text)
    wrong_type = api.post("/v1/frames", content=image, headers=AUTH | {"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert post_raw(api, image, behavior="barking").status_code == 200, "the service keeps answering"


def test_with_both_fleets_down_the_answer_is_503_and_healthz_says_so() -> None:
    dead = {"neuron": f"127.0.0.1:{free_port()}", "gpu": f"127.0.0.1:{free_port()}"}
    with TestClient(create_app(settings_for(dead))) as client:
        response = post_raw(client, PHOTO.read_bytes(), behavior="barking")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "no backend could answer" in response.json()["error"]
        health = client.get("/healthz")
        assert health.status_code == 503 and not health.json()["backends"]["gpu"]["healthy"]
        metrics = client.get("/metrics").text
        assert 'blip_api_requests_total{status="503"} 1.0' in metrics
        assert "blip_router_unanswered_total 1.0" in metrics


def api_readiness_path() -> str:
    """The path the API pods' readiness probe asks, from the rendered manifests."""
    (deployment,) = objects("api", "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main["readinessProbe"]["httpGet"]["path"]


def test_with_every_fleet_down_the_api_stays_ready_and_answers_503_itself() -> None:
    """A fleet outage must not take the API pods out of their Service: cameras get 503 with Retry-After, not a
    connection error."""
    dead = {"neuron": f"127.0.0.1:{free_port()}", "gpu": f"127.0.0.1:{free_port()}"}
    with TestClient(create_app(settings_for(dead))) as client:
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/healthz").status_code == 503, "the fleets are down"
        ready = client.get(api_readiness_path())
        assert ready.status_code == 200, ready.text
        response = post_raw(client, PHOTO.read_bytes(), behavior="barking")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"


def adapter_rule_value(exposition: str, backend: str) -> float:
    """prometheus-adapter's external rule (deploy/kubernetes/prometheus-adapter/values.yaml) over one scrape: the
    series its seriesQuery selects, for one backend, summed. Prometheus adds namespace and pod at scrape time; a raw
    exposition has neither, so those matchers are the only ones left out."""
    values = yaml.safe_load((ROOT / "deploy/kubernetes/prometheus-adapter/values.yaml").read_text())
    (rule,) = values["rules"]["external"]
    name, _, matchers = rule["seriesQuery"].partition("{")
    assert rule["name"]["as"] == SCALING_METRIC and re.fullmatch(rule["name"]["matches"], name)
    required = {
        key: value.strip('"')
        for key, value in (m.split("!=") for m in matchers.rstrip("}").split(","))
        if key not in ("namespace", "pod")
    }
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = sample.labels
            if sample.name != name or labels.get("backend") != backend:
                continue
            if all(labels.get(key, "") != excluded for key, excluded in required.items()):
                total += sample.value
    return total


def test_the_autoscaling_metric_counts_callers_frames_and_never_probes(triton) -> None:
    app = create_app(settings_for({"neuron": triton.http_url, "gpu": f"127.0.0.1:{free_port()}"}))
    with TestClient(app) as client:
        deadline = time.monotonic() + 20
        probes = 0.0
        while probes < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            metrics = client.get("/metrics").text
            probes = next(
                s.value
                for f in text_string_to_metric_families(metrics)
                for s in f.samples
                if s.name == "blip_router_probes_total" and s.labels == {"backend": "neuron", "result": "ok"}
            )
        assert probes >= 3, "the router probed the live fleet"
        assert adapter_rule_value(metrics, "neuron") == 0.0, "a probe-only series scales on zero"
        assert post_raw(client, PHOTO.read_bytes(), behavior="barking").status_code == 200
        assert adapter_rule_value(client.get("/metrics").text, "neuron") == 1.0, "one caller's frame counts once"


def test_with_a_metrics_port_the_public_port_serves_no_metrics(triton) -> None:
    port = free_port()
    app = create_app(settings_for({"neuron": triton.http_url}), metrics_address=("127.0.0.1", port))
    with TestClient(app) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 404 and f"port {port}" in refused.json()["error"]
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for series in ('blip_router_requests_total{backend="neuron"}', "process_resident_memory_bytes", "python_gc"):
            assert series in scraped, series


def test_healthz_metrics_and_openapi_are_served(api) -> None:
    health = api.get("/healthz").json()
    assert health["status"] == "ok" and health["backends"]["neuron"]["healthy"]
    metrics = api.get("/metrics").text
    for series in ('blip_router_requests_total{backend="neuron"}', 'blip_router_breaker_state{backend="gpu"}'):
        assert series in metrics
    spec = api.get("/openapi.json").json()
    body = spec["paths"]["/v1/frames"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream", "image/*"} <= set(body)
    assert {"401", "413", "503"} <= set(spec["paths"]["/v1/frames"]["post"]["responses"])


def test_the_api_refuses_to_start_without_a_token_unless_insecure_dev() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLIP_API_")} | {"BLIP_INSECURE_DEV": ""}
    result = subprocess.run(
        [sys.executable, "-m", "blip_api", "--config", str(ROOT / "client" / "api.toml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2 and "no API token: set BLIP_API_TOKEN" in result.stderr
    assert ApiSettings.load(ROOT / "client" / "api.toml", env={}, insecure_dev=True).insecure_dev


def test_a_request_id_goes_from_the_caller_through_the_router_into_the_logs_and_to_triton(triton) -> None:
    async def ask_triton() -> str | None:
        client = AsyncBlipVqaClient(triton.http_url)
        try:
            result = await client.infer(PHOTO.read_bytes(), ["Is the dog barking?"], timeout_s=20, request_id="f-42")
        finally:
            await client.close()
        return result.request_id

    assert asyncio.run(ask_triton()) == "f-42", "Triton answers with the request id it was sent"

    lines: list[str] = []
    handler = logging.Handler()
    handler.addFilter(RequestIdFilter())
    handler.emit = lambda record: lines.append(f"[{record.request_id}] {record.getMessage()}")  # type: ignore[method-assign]
    router_log = logging.getLogger("blip_client.router")
    router_log.addHandler(handler)
    dead = {"gpu": f"127.0.0.1:{free_port()}"}
    try:
        with TestClient(create_app(settings_for(dead))) as client:
            kept = post_raw(
                client, PHOTO.read_bytes(), headers=AUTH | {"X-Request-ID": "camera-7:frame-42"}, behavior="barking"
            )
            replaced = post_raw(
                client, PHOTO.read_bytes(), headers=AUTH | {"X-Request-ID": "has spaces"}, behavior="barking"
            )
    finally:
        router_log.removeHandler(handler)
    assert kept.status_code == 503 and kept.headers["x-request-id"] == "camera-7:frame-42"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"]), "an unusable id is replaced, not kept"
    assert any(line.startswith("[camera-7:frame-42] backend gpu failed") for line in lines), lines
    assert any(line.startswith(f"[{replaced.headers['x-request-id']}] backend gpu failed") for line in lines), lines
