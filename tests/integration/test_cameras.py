"""Cameras end to end: the API tier in process, its router on the session's real Triton, the event store on
SQLite, and a real webhook receiver on loopback that fails every other request.

A clip replayed through ``POST /v1/cameras/{id}/frames`` is inferred where it changed (Triton's own count says
how often) and gated elsewhere; events reach the receiver signed, retried until delivered, each delivery under
one idempotency key; every bad input gets a 4xx naming it and stores nothing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import tritonclient.http as triton_http
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from blip_api.app import create_app
from blip_api.settings import ApiSettings
from blip_bench.frames import SAMPLE
from blip_bench.receiver import Receiver
from blip_events.notify import verify
from blip_events.schema import Camera, Event
from blip_images.clips import object_enters, static_noise

ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture(scope="module")
def receiver():
    with Receiver(fail_every=2) as server:
        yield server


def app_for(triton_url: str, tmp_path, insecure: bool = True):
    settings = ApiSettings.from_dict(
        {
            # Probes are real inferences: one a minute here, so that Triton's count is the frames' own.
            "router": {"probe_interval_s": 60.0, "request_timeout_s": 20.0},
            "backends": {"fleet": {"url": triton_url}},
            "webhooks": {"allow_insecure": insecure, "first_retry_s": 0.5, "poll_interval_s": 0.1},
        },
        env={
            "BLIP_API_TOKEN": "frames-token",
            "BLIP_API_ADMIN_TOKEN": "admin-token",
            "BLIP_DB_URL": f"sqlite:///{tmp_path / 'events.sqlite3'}",
        },
    )
    return create_app(settings)


@pytest.fixture
def api(triton, tmp_path):
    with TestClient(app_for(triton.http_url, tmp_path)) as client:
        yield client


def camera(api, camera_id: str, **settings) -> dict[str, str]:
    response = api.put(f"/admin/cameras/{camera_id}", json=settings, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}", "secret": response.json()["webhook_secret"]}


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def post(api, camera_id: str, token: dict[str, str], frame: bytes, at: float | None = None):
    params = {} if at is None else {"captured_at": rfc3339(at)}
    headers = {"Authorization": token["Authorization"], "Content-Type": "image/jpeg"}
    return api.post(f"/v1/cameras/{camera_id}/frames", content=frame, params=params, headers=headers)


def inferences(triton) -> int:
    """Frames the fleet ran, in either form: the count of the layout's first Python model (the one that takes
    the frame: image_encoder, or colocated blip_vqa, which the pixel ensemble feeds too)."""
    client = triton_http.InferenceServerClient(triton.http_url)
    stats = client.get_inference_statistics(triton.layout.python_models[0])["model_stats"]
    return sum(int(model.get("inference_count", 0)) for model in stats)


def test_a_clip_is_inferred_where_it_changed_as_tritons_own_count_says(api, triton) -> None:
    token = camera(api, "cam-clip", behaviors={"barking": {}, "sleeping": {}})
    clip = object_enters(SAMPLE)
    start = time.time() - 60
    before = inferences(triton)
    outcomes = [post(api, "cam-clip", token, frame, start + t).json() for t, frame in zip(clip.times, clip.frames)]
    inferred = sum(not o["gated"] for o in outcomes)
    assert inferences(triton) - before == inferred, "one fleet request per inferred frame, none per gated one"
    assert inferred <= len(outcomes) * 0.5, f"{inferred} of {len(outcomes)} inferred on a mostly still clip"
    assert not outcomes[clip.changes[0]]["gated"], "the frame where the object enters is inferred at once"
    gated = next(o for o in outcomes if o["gated"])
    assert {r["source"] for r in gated["results"]} == {"reused"} and gated["results"][0]["scored_at"] < gated[
        "captured_at"
    ]
    assert [r["behavior"] for r in gated["results"]] == ["barking", "sleeping"]
    metrics = {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for m in family.samples
    }
    gated_count = sum(
        v
        for (name, labels), v in metrics.items()
        if name == "blip_camera_frames_total" and ("outcome", "gated") in labels
    )
    assert gated_count == len(outcomes) - inferred
    assert metrics[("blip_store_seconds_count", ())] == len(outcomes)


def test_events_reach_the_webhook_signed_and_retried_until_delivered(api, receiver) -> None:
    receiver.clear()  # the receiver serves both layouts' runs
    token = camera(
        api,
        "cam-hook",
        behaviors={"barking": {"enter": 0.001, "exit": 0.001}},
        events={"cutoff_s": 1, "cooldown_s": 0},
        gate={"max_age_s": 0.5},
        webhook_url=receiver.url,
    )
    frames = static_noise(SAMPLE, seconds=5).frames
    start = time.time() - 100
    outcomes = [post(api, "cam-hook", token, frames[i], start + i * 0.5).json() for i in range(4)]
    started = [c for o in outcomes for c in o["events"] if c["kind"] == "started"]
    assert len(started) == 1, outcomes
    # The owner raises the bar live: the scores now fall below exit, and a second later the event ends.
    response = api.put(
        "/admin/cameras/cam-hook", json={"behaviors": {"barking": {"enter": 0.9999, "exit": 0.9999}}}, headers=ADMIN
    )
    assert response.status_code == 200 and "token" not in response.json()
    outcomes += [post(api, "cam-hook", token, frames[i], start + i * 0.5).json() for i in range(4, 10)]
    ended = [c for o in outcomes for c in o["events"] if c["kind"] == "ended"]
    assert len(ended) == 1 and ended[0]["event"]["id"] == started[0]["event"]["id"]
    deadline = time.monotonic() + 20
    while len({json.loads(r.body)["kind"] for r in receiver.delivered()}) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    delivered = receiver.delivered()
    assert sorted(json.loads(r.body)["kind"] for r in delivered) == ["ended", "started"], receiver.all()
    assert any(r.status == 500 for r in receiver.all()), "the receiver failed some: they were retried"
    for received in delivered:
        sent = json.loads(received.body)
        assert received.headers["idempotency-key"] == sent["delivery_id"] and sent["camera_id"] == "cam-hook"
        assert verify(token["secret"], received.body, received.headers["blip-signature"], now=time.time())
    keys: dict[str, set[bytes]] = {}
    for received in receiver.all():
        keys.setdefault(received.headers["idempotency-key"], set()).add(received.body)
    assert all(len(bodies) == 1 for bodies in keys.values()), "a retry carries its first attempt's key and body"
    listed = api.get("/v1/cameras/cam-hook/events", headers={"Authorization": token["Authorization"]}).json()
    (event,) = listed["events"]
    assert event["state"] == "ended" and event["ended_at"] and listed["next_cursor"] is None
    key = api.get(f"/v1/cameras/cam-hook/events/{event['id']}/keyframe", headers=ADMIN)
    assert key.status_code == 200 and key.headers["content-type"] == "image/jpeg" and key.content[:2] == b"\xff\xd8"


def stored(api) -> tuple[int, list]:
    """What the store holds: the number of events, and the camera rows' states."""
    store = api.app.state.blip.cameras.store
    with store.session() as session:
        return (
            session.execute(select(func.count()).select_from(Event)).scalar(),
            sorted((c.id, json.dumps(c.state, sort_keys=True)) for c in session.execute(select(Camera)).scalars()),
        )


def test_every_bad_input_is_a_named_4xx_and_stores_nothing(api, triton, tmp_path) -> None:
    a = camera(api, "cam-a")
    camera(api, "cam-b")
    frame = static_noise(SAMPLE, seconds=1).frames[0]
    now = time.time()
    assert post(api, "cam-a", a, frame, now - 10).status_code == 200
    before = stored(api)
    cases = [
        (post(api, "cam-b", a, frame), 403, "not camera cam-b's"),
        (
            api.post("/v1/cameras/cam-a/frames", content=frame, headers={"Content-Type": "image/jpeg"}),
            401,
            "missing bearer",
        ),
        (post(api, "cam-a", {"Authorization": "Bearer wrong"}, frame), 401, "invalid bearer token"),
        (post(api, "bad id!", a, frame), 400, "must be 1 to 64 letters"),
        (post(api, "x" * 65, a, frame), 400, "must be 1 to 64 letters"),
        (
            api.post(
                "/v1/cameras/cam-a/frames",
                content=frame,
                params={"captured_at": "yesterday"},
                headers={"Authorization": a["Authorization"], "Content-Type": "image/jpeg"},
            ),
            400,
            "is not an RFC 3339 date-time",
        ),
        (
            api.post(
                "/v1/cameras/cam-a/frames",
                content=frame,
                params={"captured_at": "2026-12-03T10:00:00"},
                headers={"Authorization": a["Authorization"], "Content-Type": "image/jpeg"},
            ),
            400,
            "with an offset",
        ),
        (post(api, "cam-a", a, frame, now + 3600), 400, "in the future"),
        (post(api, "cam-a", a, frame, now - 60), 409, "before this camera's last frame"),
        (post(api, "cam-a", a, b"not a jpeg"), 400, "IMAGE is not an image Pillow can identify"),
        (api.put("/admin/cameras/cam-c", json={"webhook_url": "http://10.0.0.8/hook"}, headers=ADMIN), 400, "10.0.0.8"),
        (
            api.put("/admin/cameras/cam-c", json={"webhook_url": "https://169.254.169.254/x"}, headers=ADMIN),
            400,
            "metadata",
        ),
        (api.put("/admin/cameras/cam-c", json={"gate": {"max_age": 5}}, headers=ADMIN), 422, "gate.max_age"),
        (api.put("/admin/cameras/cam-c", json={"behaviors": {"zoomies": {}}}, headers=ADMIN), 400, "zoomies"),
        (api.put("/admin/cameras/cam-c", json={"mqtt": True}, headers=ADMIN), 400, "no [mqtt] broker"),
        (
            api.put("/admin/cameras/cam-c", json={}, headers={"Authorization": a["Authorization"]}),
            401,
            "invalid bearer",
        ),
        (api.get("/v1/cameras/cam-a/events", params={"cursor": "nonsense"}, headers=ADMIN), 400, "cursor"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["error"], (status, response.text)
    assert stored(api) == before, "nothing stored from a refused request"
    assert api.get("/admin/cameras/cam-c", headers=ADMIN).status_code == 404


def test_a_loopback_webhook_is_refused_unless_development_allows_it(triton, tmp_path) -> None:
    with TestClient(app_for(triton.http_url, tmp_path, insecure=False)) as strict:
        response = strict.put(
            "/admin/cameras/cam-1", json={"webhook_url": "https://127.0.0.1:8443/hook"}, headers=ADMIN
        )
        assert response.status_code == 400 and "loopback" in response.json()["error"]
        assert (
            strict.put("/admin/cameras/cam-1", json={"webhook_url": "http://example.com/h"}, headers=ADMIN).status_code
            == 400
        )


def test_a_deleted_camera_takes_its_events_and_token_with_it(api) -> None:
    token = camera(api, "cam-gone", behaviors={"barking": {"enter": 0.001, "exit": 0.001}})
    frame = static_noise(SAMPLE, seconds=1).frames[0]
    start = time.time() - 50
    for i in range(3):
        post(api, "cam-gone", token, frame, start + i * 11)
    assert api.get("/v1/cameras/cam-gone/events", headers=ADMIN).json()["events"]
    assert api.delete("/admin/cameras/cam-gone", headers=ADMIN).status_code == 204
    assert api.get("/v1/cameras/cam-gone/events", headers=ADMIN).json()["events"] == []
    assert post(api, "cam-gone", token, frame).status_code == 401
    assert api.delete("/admin/cameras/cam-gone", headers=ADMIN).status_code == 404


def test_a_reload_reaches_the_delivery_worker(triton, tmp_path, monkeypatch) -> None:
    """``[webhooks]`` changed by ``/admin/reload`` holds for deliveries already retrying: a receiver that always
    fails, then ``give_up_after_s`` lowered, and the pending delivery is dead at its next attempt."""
    path = tmp_path / "api.toml"
    config = (
        f'[router]\nprobe_interval_s = 60.0\n[backends.fleet]\nurl = "{triton.http_url}"\n'
        "[webhooks]\nallow_insecure = true\nfirst_retry_s = 0.2\nmax_backoff_s = 0.4\npoll_interval_s = 0.1\n"
        "give_up_after_s = 3600.0\n"
    )
    path.write_text(config)
    for name, value in {
        "BLIP_API_TOKEN": "frames-token",
        "BLIP_API_ADMIN_TOKEN": "admin-token",
        "BLIP_DB_URL": f"sqlite:///{tmp_path / 'events.sqlite3'}",
    }.items():
        monkeypatch.setenv(name, value)  # a reload reads the environment again
    with Receiver(fail_every=1) as failing, TestClient(create_app(ApiSettings.load(path))) as api:
        token = camera(
            api,
            "cam-reload",
            behaviors={"barking": {"enter": 0.001, "exit": 0.001}},
            gate={"max_age_s": 0.5},
            webhook_url=failing.url,
        )
        frames = static_noise(SAMPLE, seconds=3).frames
        start = time.time() - 100
        outcomes = [post(api, "cam-reload", token, frames[i], start + i * 0.5).json() for i in range(4)]
        assert any(c["kind"] == "started" for o in outcomes for c in o["events"]), outcomes
        deadline = time.monotonic() + 10
        while len(failing.all()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(failing.all()) >= 2, "the delivery is retried while the receiver fails"
        dead = "/admin/deliveries?state=dead"
        assert api.get(dead, headers=ADMIN).json()["deliveries"] == []
        path.write_text(config.replace("give_up_after_s = 3600.0", "give_up_after_s = 0.5"))
        assert api.post("/admin/reload", headers=ADMIN).status_code == 200
        deadline = time.monotonic() + 10
        while not api.get(dead, headers=ADMIN).json()["deliveries"] and time.monotonic() < deadline:
            time.sleep(0.1)
        (given_up,) = api.get(dead, headers=ADMIN).json()["deliveries"]
        assert given_up["camera_id"] == "cam-reload" and given_up["kind"] == "started", given_up
