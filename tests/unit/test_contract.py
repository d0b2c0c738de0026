"""blip_contract: the rules callers and the API tier share."""

from __future__ import annotations

from fastapi.testclient import TestClient

from blip_api.app import create_app
from blip_api.settings import ApiSettings
from blip_client.router import Router
from blip_client.wire import PROBE_IMAGE, VqaResult
from blip_contract import reaches
from blip_contract.pixels import PixelSettings


def test_a_score_equal_to_the_threshold_reaches_it() -> None:
    assert reaches(0.5, 0.5), "the boundary alerts: score >= threshold"
    assert reaches(0.500001, 0.5) and not reaches(0.499999, 0.5)
    assert reaches(1.0, 0.999) and not reaches(0.0, 0.001)


class FixedScores:
    """A fleet's client that answers every frame with set scores: the route's alert boundary, exactly."""

    closed = False

    def __init__(self, url: str) -> None:
        self.url = url

    async def read_pixel_settings(self, timeout_s):
        return PixelSettings(height=8, width=8, max_image_bytes=2**20, max_image_pixels=10**6)

    async def infer(self, image, questions, *, timeout_s, scores_only=False, request_id=None):
        return VqaResult([0.5, 0.4999999, 0.5000001][: len(questions)], None)

    async def close(self) -> None:
        self.closed = True


def test_the_frames_route_alerts_on_a_score_equal_to_the_threshold(tmp_path) -> None:
    env = {"BLIP_DB_URL": f"sqlite:///{tmp_path / 'events.sqlite3'}"}
    settings = ApiSettings.from_dict({"backends": {"a": {"url": "fleet:1"}}}, env=env, insecure_dev=True)
    app = create_app(settings, router=Router(settings.router, connect=FixedScores))
    with TestClient(app) as client:
        response = client.post(
            "/v1/frames",
            content=PROBE_IMAGE,  # a real image: the API tier decodes and checks every frame before a fleet call
            params={"behavior": ["barking", "eating", "sleeping"]},
            headers={"Content-Type": "image/jpeg"},
        )
    assert response.status_code == 200, response.text
    assert [r["alert"] for r in response.json()["results"]] == [True, False, True]
