"""The canary through the real API tier and real fleets: the current fleet serves model version 1; a candidate
serving version 2 (another checkpoint, which answers yes/no the other way) shadows half of its frames. Callers get
the current fleet's answers and never wait for a mirror (a candidate that hangs holds no caller); the candidate's
disagreement is reported and its promotion refused with the reason; a candidate serving version 1 again agrees and
is promoted in steps."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from blip_api.app import create_app
from blip_api.settings import DEFAULT_BEHAVIORS, ApiSettings
from blip_client.client import BlipVqaClient
from blip_serving.triton.process import TritonServer
from tests.conftest import VALID_IMAGES
from tests.integration.test_api import ADMIN_TOKEN, AUTH, EVENT_STORE, TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FRAMES = [p.read_bytes() for p in VALID_IMAGES if p.suffix in (".jpg", ".png")][:8]
BEHAVIORS = ["barking", "eating", "sleeping"]


@pytest.fixture(scope="module")
def fleets(two_versions) -> Iterator[dict[str, TritonServer]]:
    """current: version 1; candidate: version 2; twin: version 1 again, as a candidate equal to the current."""
    servers = {
        name: TritonServer(two_versions, "cpu", layout="colocated", model_version=version)
        for name, version in (("current", 1), ("candidate", 2), ("twin", 1))
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def app_for(fleets: dict[str, TritonServer], candidate: str, share: float | None) -> TestClient:
    data = {
        "router": {"probe_interval_s": 0.5, "request_timeout_s": 20.0},
        "backends": {
            "current": {"url": fleets["current"].http_url},
            candidate: {"url": fleets[candidate].http_url, "weight": 0},
        },
    }
    if share is not None:
        data["canary"] = {"candidate": candidate, "current": "current", "share": share, "min_frames": 10}
    env = {"BLIP_API_TOKEN": TOKEN, "BLIP_API_ADMIN_TOKEN": ADMIN_TOKEN, "BLIP_DB_URL": EVENT_STORE}
    return TestClient(create_app(ApiSettings.from_dict(data, env=env)))


def drained(client: TestClient) -> None:
    """Until no mirror is in flight: each frame's mirror is done before the next frame, so the report's counts are
    exact, and the two fleets do not share this machine's two cores with the next frame (in a cluster they share
    nothing)."""
    canary = client.app.state.blip.canary
    deadline = time.monotonic() + 30
    while canary is not None and canary.tasks and time.monotonic() < deadline:
        time.sleep(0.005)


def post_frame(client: TestClient, index: int) -> dict:
    """Frame ``index`` (of FRAMES, in turn) asked the behaviours: the caller's answer."""
    response = client.post(
        "/v1/frames",
        content=FRAMES[index % len(FRAMES)],
        params={"behavior": BEHAVIORS},
        headers=AUTH | {"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def send(client: TestClient, frames: int) -> tuple[list[list[float]], set[str]]:
    """``frames`` frames, each one's mirror done before the next: the scores per frame and the backends."""
    scores, backends = [], set()
    for index in range(frames):
        body = post_frame(client, index)
        scores.append([r["score"] for r in body["results"]])
        backends.add(body["backend"])
        drained(client)
    return scores, backends


def direct_scores(server: TritonServer, frames: int) -> list[list[float]]:
    with BlipVqaClient(server.http_url) as client:
        questions = [DEFAULT_BEHAVIORS[b] for b in BEHAVIORS]
        return [client.infer(FRAMES[i % len(FRAMES)], questions, scores_only=True).scores for i in range(frames)]


def test_shadow_traffic_leaves_callers_answers_and_reports_the_disagreement(fleets) -> None:
    frames = 40
    with app_for(fleets, "candidate", share=0.5) as shadowed:
        send(shadowed, 4)  # warm both paths
        answers, backends = send(shadowed, frames)
        report = shadowed.get("/admin/canary", headers=ADMIN).json()
        refused = shadowed.post("/admin/canary/promote", json={}, headers=ADMIN)
        metrics = shadowed.get("/metrics").text
        forced = shadowed.post("/admin/canary/promote", json={"force": True}, headers=ADMIN)
        routed = shadowed.get("/admin/backends", headers=ADMIN).json()
    # Callers: the current fleet's answers, every one, and the current fleet's latency.
    assert backends == {"current"}
    expected = direct_scores(fleets["current"], frames)
    assert np.allclose(answers, expected, atol=1e-5)
    # The candidate: mirrored about half the frames, and disagreed on them.
    assert 10 <= report["mirrored"] <= frames + 4 and report["failed"] == 0 and report["skipped"] == 0
    assert set(report["behaviors"]) == set(BEHAVIORS)
    worst = min(b["agreement"] for b in report["behaviors"].values())
    assert worst < 0.98 and report["promotable"] is False
    assert report["current_p50_ms"] > 0 and report["candidate_p50_ms"] > 0
    assert refused.status_code == 409
    detail = refused.json()["error"]
    assert detail.startswith("promotion refused: candidate agrees with current on ") and "under the 98.0%" in detail
    assert 'blip_canary_frames_total{behavior="barking"}' in metrics and "blip_canary_alert_flips_total" in metrics
    # Forced, the first step gives the candidate 10% of the routed traffic.
    assert forced.status_code == 200 and forced.json()["candidate_share"] == 0.1
    assert (routed["candidate"]["weight"], routed["current"]["weight"]) == (0.1, 0.9)


def test_a_candidate_that_hangs_holds_no_caller(fleets) -> None:
    """The candidate's tritonserver stopped (SIGSTOP): it accepts connections and answers nothing. A caller that
    waited for its frame's mirror would wait the router's 20 s request timeout; each answer comes at once instead,
    while the mirrors hang, and they finish once the candidate goes on."""
    candidate = fleets["candidate"].process
    with app_for(fleets, "candidate", share=1.0) as client:
        send(client, 2)  # warm both paths
        canary = client.app.state.blip.canary
        os.kill(candidate.pid, signal.SIGSTOP)
        try:
            latencies = []
            for index in range(4):
                started = time.perf_counter()
                body = post_frame(client, index)
                latencies.append(time.perf_counter() - started)
                assert body["backend"] == "current", body
            in_flight = len(canary.tasks)
        finally:
            os.kill(candidate.pid, signal.SIGCONT)
        assert max(latencies) < 5.0, latencies
        assert in_flight == 4, "every mirror still waits on the stopped candidate while its caller has its answer"
        drained(client)
        report = client.get("/admin/canary", headers=ADMIN).json()
        assert report["mirrored"] + report["failed"] == 6 and not canary.tasks


def test_a_candidate_equal_to_the_current_version_is_promoted_in_steps(fleets) -> None:
    with app_for(fleets, "twin", share=1.0) as client:
        early = client.post("/admin/canary/promote", json={}, headers=ADMIN)
        assert (
            early.status_code == 409 and "only 0 frames mirrored to twin; promotion needs 10" in early.json()["error"]
        )
        send(client, 12)
        report = client.get("/admin/canary", headers=ADMIN).json()
        assert report["mirrored"] == 12 and report["promotable"] is True
        assert all(b["agreement"] == 1.0 and b["alert_flips"] == 0 for b in report["behaviors"].values())
        assert all(b["max_abs_delta"] < 1e-4 for b in report["behaviors"].values())
        shares = []
        for _ in range(3):
            response = client.post("/admin/canary/promote", json={}, headers=ADMIN)
            assert response.status_code == 200, response.text
            shares.append(response.json()["candidate_share"])
        assert shares == [0.1, 0.5, 1.0]
        weights = client.get("/admin/backends", headers=ADMIN).json()
        assert (weights["twin"]["weight"], weights["current"]["weight"]) == (1.0, 0.0)
        _, backends = send(client, 4)
        assert backends == {"twin"}, "promoted: the candidate takes all the traffic and nothing is mirrored"
        done = client.post("/admin/canary/promote", json={"force": True}, headers=ADMIN)
        assert done.status_code == 409 and "twin already takes all the traffic" in done.json()["error"]
