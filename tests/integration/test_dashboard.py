"""deploy/grafana/blip-vqa.json: every metric a panel queries is one the code exports, scraped from the real
components: the API tier (router and process), a real Triton server, and the supervisor's registry."""

from __future__ import annotations

import json
import re
import urllib.request

from fastapi.testclient import TestClient

from blip_api.app import create_app
from blip_serving.supervisor import Supervisor
from tests.conftest import ROOT
from tests.integration.test_api import ADMIN_TOKEN, PHOTO, post_raw, settings_for

DASHBOARD = ROOT / "deploy" / "grafana" / "blip-vqa.json"
# Triton reports these only where a GPU is present (its metrics docs: GPU metrics, the GPU fleet's image), so no
# CPU server here exports them; each is named in Triton's metrics documentation.
GPU_ONLY = {"nv_gpu_utilization", "nv_gpu_memory_used_bytes"}
# neuron-monitor's Prometheus exporter (the Neuron overlay's DaemonSet) on an Inferentia node; named in the Neuron
# docs' neuron-monitor user guide.
NEURON_ONLY = {"neuroncore_utilization_ratio", "neuron_runtime_memory_used_bytes"}
METRIC = re.compile(r"\b((?:nv|blip|process|python|neuroncore|neuron)_[a-zA-Z0-9_]+)")


def sample_names(exposition: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}


def queried_metrics() -> dict[str, str]:
    """Every metric name in every panel's query -> the panel's title."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        name: panel["title"]
        for panel in panels
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }


def test_every_dashboard_query_names_a_metric_the_code_exports(triton) -> None:
    with TestClient(create_app(settings_for({"neuron": triton.http_url}))) as client:
        # One answered frame: labelled series (answers by status) exist from their first sample.
        assert post_raw(client, PHOTO.read_bytes(), behavior="barking").status_code == 200
        # And one camera frame: the event layer's frame outcomes (its events and deliveries start at zero).
        camera = client.put(  # a new token each time: the session's store may hold the camera already
            "/admin/cameras/dashboard",
            json={},
            params={"rotate_token": "true"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert camera.status_code in (200, 201), camera.text
        framed = client.post(
            "/v1/cameras/dashboard/frames",
            content=PHOTO.read_bytes(),
            headers={"Authorization": f"Bearer {camera.json()['token']}", "Content-Type": "image/jpeg"},
        )
        assert framed.status_code == 200, framed.text
        exported = sample_names(client.get("/metrics").text)
    exported |= sample_names(urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode())
    supervisor = Supervisor(server=triton)
    supervisor.probes.labels("ok")
    supervisor.recovered.labels("stub", "reload")
    exported |= {sample.name for family in supervisor.registry.collect() for sample in family.samples}
    queried = queried_metrics()
    assert len(queried) >= 15, queried
    missing = {
        name: title for name, title in queried.items() if name not in exported and name not in GPU_ONLY | NEURON_ONLY
    }
    assert not missing, f"panels query metrics nothing exports: {missing}"
