"""deploy/kubernetes: every overlay renders (kubectl kustomize), validates in strict mode against the Kubernetes
1.30 schemas (kubernetes-validate, offline), passes checkov's Kubernetes checks (skips written down below), and
carries what matters: probes, resources, no secret values, the NetworkPolicy on the fleets, the images docker/
builds, an HPA that scales on callers' frames with a target measured on the fleet's own hardware (or a placeholder
the API refuses), the build Job and model volume, and the NeuronCores of the plan."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import tomllib
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from blip_serving.capacity import (
    FLEETS,
    SCALING_METRIC,
    UNMEASURED,
    capacity_file,
    capacity_patch,
    per_pod_target,
    read_perf,
)
from blip_serving.placement import make_plan
from blip_serving.targets.neuron import neuron_cores_needed
from tests.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
FLEET_OVERLAYS = {spec["overlay"]: fleet for fleet, spec in FLEETS.items() if spec["overlay"]}
BUILD_OVERLAYS = {f"{overlay}-build": fleet for overlay, fleet in FLEET_OVERLAYS.items()}
PERF_OVERLAYS = {f"{overlay}-perf": fleet for overlay, fleet in FLEET_OVERLAYS.items()}
STORAGE_OVERLAYS = {f"{overlay}-storage": fleet for overlay, fleet in FLEET_OVERLAYS.items()}
IMAGES = tomllib.loads((ROOT / "docker" / "images.toml").read_text())["images"]
KUBERNETES_VERSION = "1.30.0"
# Images this project does not build, pulled as their makers publish them (tools/k8s_render.sh leaves them).
THIRD_PARTY_IMAGES = {"public.ecr.aws/neuron/neuron-monitor:1.0.0"}
# Kinds the Kubernetes schemas do not hold (CRDs), checked by hand below.
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule"}
# checkov checks skipped, and why (each is a decision, not an oversight):
CHECKOV_SKIPS = {
    "CKV_K8S_43": "images are built by docker/ and pinned by the deployment pipeline (tag or digest set there)",
    "CKV_K8S_15": "IfNotPresent with a versioned tag (tools/k8s_render.sh sets registry and tag); a digest is the "
    "deployment pipeline's (see CKV_K8S_43)",
    "CKV_K8S_14": "image tag: as CKV_K8S_43",
    "CKV_K8S_21": "the namespace is chosen at apply time (kubectl apply -n), not fixed in the manifests",
    "CKV_K8S_11": "no CPU limit on purpose: CPU limits throttle OpenMP inference threads; requests are set",
    "CKV_K8S_35": "tokens reach the API as environment variables from a Secret, as its settings read them",
    "CKV_K8S_40": "uid 1000 is the NGC Triton image's own non-root user (triton-server); the API runs as 10001",
    "CKV_K8S_25": "the Neuron fleet adds IPC_LOCK alone (the Neuron runtime locks host memory it shares with the "
    "device, as the Neuron container docs run it); every other capability stays dropped",
    "CKV2_K8S_6": "the API tier's own NetworkPolicy belongs to the ingress in front of it, which is site-specific",
}


@cache
def render(overlay: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is part of the machine image"
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict]:
    return [doc for doc in render(overlay) if doc["kind"] == kind]


def container(overlay: str) -> dict:
    (deployment,) = objects(overlay, "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_validates_strictly_against_the_kubernetes_schemas(overlay) -> None:
    for doc in render(overlay):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", [*FLEET_OVERLAYS, "api"])
def test_pod_monitors_scrape_triton_the_supervisor_and_the_api(overlay) -> None:
    (monitor,) = [
        m for m in objects(overlay, "PodMonitor") if m["metadata"]["name"].endswith(("blip-fleet", "blip-api"))
    ]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (deployment,) = objects(overlay, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    scraped = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    main = container(overlay)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert scraped <= set(ports)
    if overlay == "api":
        assert scraped == {"metrics"} and main["args"][main["args"].index("--metrics-port") + 1] == str(
            ports["metrics"]
        )
        (service,) = objects("api", "Service")
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"], "the public Service carries no metrics"
    else:
        assert scraped == {"metrics", "supervisor"}
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["BLIP_SUPERVISOR_METRICS_PORT"] == str(ports["supervisor"])


@pytest.mark.parametrize("overlay", list(FLEET_OVERLAYS))
def test_fleets_are_ready_on_a_real_inference_and_live_on_the_process_alone(overlay) -> None:
    main = container(overlay)
    assert main["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert main["startupProbe"]["periodSeconds"] * main["startupProbe"]["failureThreshold"] >= 300
    assert main["readinessProbe"]["exec"]["command"][:2] == ["blip-client", "probe"]
    # Liveness runs no inference: a saturated queue must never get the pod restarted.
    assert main["livenessProbe"] == main["livenessProbe"] | {"httpGet": {"path": "/v2/health/live", "port": "http"}}
    assert "exec" not in main["livenessProbe"]
    resources = main["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    accelerator = {k for k in resources["limits"] if "/" in k}
    assert accelerator == {"aws.amazon.com/neuroncore"} or accelerator == {"nvidia.com/gpu"}
    assert main["command"][:3] == ["python3", "-m", "blip_serving.serve"], "what make serve runs"
    ports = {p["name"] for p in objects(overlay, "Service")[0]["spec"]["ports"]}
    assert ports == {"http", "grpc", "metrics"}
    assert objects(overlay, "PodDisruptionBudget")
    spec = objects(overlay, "Deployment")[0]["spec"]["template"]["spec"]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spec["hostNetwork"] is False and spec["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    shm = next(v for v in spec["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
    # A rolling update drains: the endpoint goes first, then Triton finishes what it holds within the grace period.
    sleep = int(main["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] >= sleep + 30 + 5


def test_api_pods_stay_ready_while_the_fleets_are_down() -> None:
    """Readiness and liveness on /livez (the process), never /healthz (the fleets): during a fleet outage the API
    answers 503 with Retry-After itself (tests/integration/test_api.py holds the behaviour)."""
    main = container("api")
    assert main["readinessProbe"]["httpGet"]["path"] == main["livenessProbe"]["httpGet"]["path"] == "/livez"


@pytest.mark.parametrize("overlay", [*FLEET_OVERLAYS, *BUILD_OVERLAYS, *PERF_OVERLAYS, "api"])
def test_overlays_name_the_images_docker_builds(overlay) -> None:
    built = {f"{image['name']}:0.1.0" for image in IMAGES.values()}
    images = {c["image"] for doc in render(overlay) for c in _containers(doc)} - THIRD_PARTY_IMAGES
    assert images and images <= built, images
    fleet = FLEET_OVERLAYS.get(overlay) or BUILD_OVERLAYS.get(overlay) or PERF_OVERLAYS.get(overlay) or "api"
    assert images == {f"{IMAGES[fleet]['name']}:0.1.0"}
    assert all(c["imagePullPolicy"] == "IfNotPresent" for doc in render(overlay) for c in _containers(doc))


def test_rendering_for_a_registry_rewrites_every_image_and_changes_nothing_committed() -> None:
    result = subprocess.run(
        [str(ROOT / "tools" / "k8s_render.sh"), "neuron-inf2-xlarge", "registry.example.com/team", "1.2.3"],
        capture_output=True,
        text=True,
        check=True,
    )
    images = {line.split("image:")[1].strip() for line in result.stdout.splitlines() if " image:" in line}
    assert images - THIRD_PARTY_IMAGES == {"registry.example.com/team/blip-vqa-neuron:1.2.3"}
    assert not list(KUBERNETES.glob(".render-*")), "the throwaway kustomization is removed"


@pytest.mark.parametrize("overlay", list(FLEET_OVERLAYS))
def test_the_model_volume_is_the_one_the_build_job_writes(overlay) -> None:
    (claim,) = objects(f"{overlay}-storage", "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # The volume is a step of its own: neither the fleet nor the Job owns it, so deleting either keeps the model.
    assert not objects(overlay, "PersistentVolumeClaim") and not objects(f"{overlay}-build", "PersistentVolumeClaim")
    assert [doc["kind"] for doc in render(f"{overlay}-storage")] == ["PersistentVolumeClaim"]
    spec = objects(overlay, "Deployment")[0]["spec"]["template"]["spec"]
    model = next(v for v in spec["volumes"] if v["name"] == "model")["persistentVolumeClaim"]
    assert model == {"claimName": claim["metadata"]["name"], "readOnly": True}
    assert all(m.get("readOnly") for m in container(overlay)["volumeMounts"] if m["name"] == "model")
    (job,) = objects(f"{overlay}-build", "Job")
    job_spec = job["spec"]["template"]["spec"]
    job_model = next(v for v in job_spec["volumes"] if v["name"] == "model")["persistentVolumeClaim"]
    assert job_model == {"claimName": claim["metadata"]["name"]}
    (build,) = job_spec["containers"]
    env = {e["name"]: e.get("value") for e in build["env"]}
    assert env["BLIP_TARGET"] == FLEET_OVERLAYS[overlay]
    assert "python3 -m blip_build" in build["args"][0] and "/opt/blip/model/artifacts" in build["args"][0]
    # The fleet reads what the Job writes: artifacts/ and model_repository/ of the same volume.
    paths = {m["subPath"]: m["mountPath"] for m in container(overlay)["volumeMounts"] if m["name"] == "model"}
    assert paths == {"artifacts": "/opt/blip/artifacts", "model_repository": "/opt/blip/model_repository"}


def test_the_neuron_fleet_takes_the_cores_and_layout_of_its_plan() -> None:
    plan = make_plan("inf2.xlarge")
    main = container("neuron-inf2-xlarge")
    cores = int(main["resources"]["limits"]["aws.amazon.com/neuroncore"])
    assert cores == neuron_cores_needed(plan.chosen.deployment) == 2
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["BLIP_LAYOUT"] == plan.chosen.layout == "colocated"
    (deployment,) = objects("neuron-inf2-xlarge", "Deployment")
    assert deployment["spec"]["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"] == "inf2.xlarge"
    assert (
        make_plan("g5.xlarge").chosen.layout
        == {e["name"]: e["value"] for e in container("gpu-g5-xlarge")["env"]}["BLIP_LAYOUT"]
    )


@pytest.mark.parametrize("overlay", list(FLEET_OVERLAYS))
def test_the_hpa_scales_on_callers_frames_with_a_target_measured_on_its_hardware_or_none(overlay) -> None:
    fleet = FLEET_OVERLAYS[overlay]
    assert not objects(overlay, "HorizontalPodAutoscaler"), "the HPA is its own step, after the perf Job"
    (hpa,) = objects(f"{overlay}-autoscaling", "HorizontalPodAutoscaler")
    (deployment,) = objects(overlay, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"] == {"name": SCALING_METRIC, "selector": {"matchLabels": {"backend": fleet}}}
    assert metric["external"]["target"]["type"] == "AverageValue"
    text = capacity_file(KUBERNETES / "overlays", fleet).read_text()
    target = metric["external"]["target"]["averageValue"]
    if target == UNMEASURED:
        # No perf result of this hardware exists: the placeholder, which the API server refuses (not a quantity).
        assert text == capacity_patch(fleet, None)
        # The API server parses quantities with apimachinery's pattern (its OpenAPI schema states it); the offline
        # schemas do not check it, so the test does.
        assert not re.fullmatch(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)", target)
        return
    header = text.splitlines()[2]
    source = ROOT / "benchmarks" / "results" / header.split("source ")[1].split(" ")[0]
    measured = read_perf(source)
    assert measured.target == fleet, "a target is only ever measured on the fleet's own hardware"
    assert float(target) == per_pod_target(measured)
    assert capacity_patch(fleet, measured).split("\n", 1)[1] == text.split("\n", 1)[1]


def test_make_capacity_never_writes_another_hardwares_target_into_an_overlay(tmp_path, capsys) -> None:
    from blip_serving.capacity import main_capacity

    for overlay in FLEET_OVERLAYS:
        (tmp_path / f"{overlay}-autoscaling").mkdir()
    code = main_capacity(
        ["--perf", str(ROOT / "benchmarks" / "results" / "perf-cpu.json"), "--overlays", str(tmp_path)]
    )
    assert code == 2 and "measured the cpu target, which no overlay runs" in capsys.readouterr().err
    assert not list(tmp_path.rglob("capacity.yaml"))


def test_the_adapter_rule_makes_the_metric_the_hpas_ask_for() -> None:
    values = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = values["rules"]["external"]
    assert rule["name"]["as"] == SCALING_METRIC
    assert rule["seriesQuery"].startswith("blip_router_requests_total{") and "by (backend)" in rule["metricsQuery"]
    # The one per-pod Triton series: queue time, for components/queue-time-scaling (a rate of Triton's request
    # counters would count probes).
    (queue,) = values["rules"]["custom"]
    assert queue["name"]["as"] == "blip_fleet_queue_seconds"
    assert queue["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


@pytest.mark.parametrize("overlay", [f"{overlay}-autoscaling" for overlay in FLEET_OVERLAYS])
def test_queue_time_scaling_is_an_option_beside_the_request_rate(overlay, tmp_path) -> None:
    """components/queue-time-scaling adds Triton's queue time per pod to a fleet's HPA; the request rate stays."""
    (default,) = objects(overlay, "HorizontalPodAutoscaler")
    assert [m["type"] for m in default["spec"]["metrics"]] == ["External"], "the request rate alone by default"
    scratch = Path(tempfile.mkdtemp(prefix=".render-", dir=KUBERNETES))
    try:
        (scratch / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [../overlays/{overlay}]\ncomponents: [../components/queue-time-scaling]\n"
        )
        result = subprocess.run(["kubectl", "kustomize", str(scratch)], capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(scratch)
    (hpa,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "HorizontalPodAutoscaler"]
    external, pods = hpa["spec"]["metrics"]
    assert external == default["spec"]["metrics"][0]
    assert pods["type"] == "Pods" and pods["pods"]["metric"]["name"] == "blip_fleet_queue_seconds"
    assert pods["pods"]["target"] == {"type": "AverageValue", "averageValue": "50m"}
    kubernetes_validate.validate({**hpa, "spec": {**hpa["spec"], "metrics": [pods]}}, KUBERNETES_VERSION, strict=True)


def test_the_queue_time_rule_is_seconds_in_the_queue_of_the_worst_model(tmp_path) -> None:
    """The adapter's query, with its template filled as the adapter fills it for one pod, evaluated by promtool on
    series written here: 0.2 s per request in the text decoder's queue, 0.01 s in blip_vqa's."""
    values = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "values.yaml").read_text())
    (queue,) = values["rules"]["custom"]
    pod = 'namespace="blip",pod="neuron-blip-fleet-1"'
    expr = queue["metricsQuery"].replace("<<.LabelMatchers>>", pod).replace("<<.GroupBy>>", "namespace, pod")
    rules = {"groups": [{"name": "adapter", "rules": [{"record": "blip_fleet_queue_seconds", "expr": expr}]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    series = {
        f'nv_inference_queue_duration_us{{model="text_decoder",{pod}}}': "0+12000000x10",
        f'nv_inference_request_success{{model="text_decoder",{pod}}}': "0+60x10",
        f'nv_inference_queue_duration_us{{model="blip_vqa",{pod}}}': "0+600000x10",
        f'nv_inference_request_success{{model="blip_vqa",{pod}}}': "0+60x10",
    }
    test = {
        "interval": "1m",
        "input_series": [{"series": name, "values": v} for name, v in series.items()],
        "promql_expr_test": [
            {
                "expr": "blip_fleet_queue_seconds",
                "eval_time": "8m",
                "exp_samples": [{"labels": f"blip_fleet_queue_seconds{{{pod}}}", "value": 0.2}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": [test]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    result = subprocess.run([promtool, "test", "rules", "test.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_api_tier_reads_tokens_from_a_secret_and_no_manifest_holds_one() -> None:
    main = container("api")
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in main["env"] if "valueFrom" in e}
    assert secrets == {
        "BLIP_API_TOKEN": "blip-api-tokens",
        "BLIP_API_ADMIN_TOKEN": "blip-api-tokens",
        # The replicas share one PostgreSQL: its URL (with its password) and the token-hash key are secrets too.
        "BLIP_DB_URL": "blip-api-db",
        "BLIP_TOKEN_HASH_KEY": "blip-api-db",
        "BLIP_MQTT_PASSWORD": "blip-api-mqtt",  # optional: only where [mqtt] names a broker with a username
    }
    db_url = next(e for e in main["env"] if e["name"] == "BLIP_DB_URL")
    assert not db_url["valueFrom"]["secretKeyRef"].get("optional"), "required: no replica falls back on SQLite"
    assert not any("value" in e for e in main["env"] if e["name"].endswith("TOKEN"))
    (hpa,) = objects("api", "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for overlay in OVERLAYS:
        assert not objects(overlay, "Secret"), overlay
        for doc in render(overlay):
            for env in _envs(doc):
                assert not (env["name"].endswith("TOKEN") and "value" in env), f"{overlay}: {env}"
    (config,) = objects("api", "ConfigMap")

    def keys(table: dict) -> list[str]:
        return [k for key, value in table.items() for k in ([key] + (keys(value) if isinstance(value, dict) else []))]

    assert not [k for k in keys(tomllib.loads(config["data"]["api.toml"])) if "token" in k.lower()]
    backends = {line.split('"')[1] for line in config["data"]["api.toml"].splitlines() if line.startswith("url")}
    services = {f"{o['metadata']['name']}:8000" for overlay in FLEET_OVERLAYS for o in objects(overlay, "Service")}
    assert backends == services, "the router's fleets are the fleet Services"


def _containers(doc: dict) -> list[dict]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def _envs(doc: dict) -> list[dict]:
    return [env for c in _containers(doc) for env in c.get("env", [])]


def test_the_network_policy_admits_only_the_api_tier_the_perf_job_and_prometheus_to_the_fleets() -> None:
    api_labels = objects("api", "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    for overlay in FLEET_OVERLAYS:
        (perf_job,) = objects(f"{overlay}-perf", "Job")
        perf_labels = perf_job["spec"]["template"]["metadata"]["labels"]
        (policy,) = objects(overlay, "NetworkPolicy")
        pod_labels = objects(overlay, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        inference, metrics = policy["spec"]["ingress"]
        # matchExpressions, which kustomize's fleet labels leave alone: the API pods carry no fleet label.
        (expression,) = inference["from"][0]["podSelector"]["matchExpressions"]
        assert "matchLabels" not in inference["from"][0]["podSelector"]
        assert expression["operator"] == "In"
        assert expression["values"] == [api_labels[expression["key"]], perf_labels[expression["key"]]]
        assert {p["port"] for p in inference["ports"]} == {8000, 8001}
        assert {p["port"] for p in metrics["ports"]} == {8002, 8003}
        assert "namespaceSelector" in metrics["from"][0]


def test_checkov_kubernetes_checks_pass_with_every_skip_justified(tmp_path) -> None:
    checkov = ROOT / ".venv-tools" / "bin" / "checkov"
    assert checkov.is_file(), "make install puts checkov in .venv-tools (its pins clash with the project's)"
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    result = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for entry in reports
        for check in entry.get("results", {}).get("failed_checks", [])
    ]
    passed = sum(entry["summary"]["passed"] for entry in reports)
    assert not failed and sum(entry["summary"]["failed"] for entry in reports) == 0, "\n".join(failed)
    assert passed > 100, f"only {passed} checks passed"


def test_the_neuron_fleet_may_lock_memory_and_nothing_else() -> None:
    """IPC_LOCK for the Neuron runtime, as the Neuron container docs run it; every other capability dropped."""
    capabilities = container("neuron-inf2-xlarge")["securityContext"]["capabilities"]
    assert capabilities == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert "add" not in container("gpu-g5-xlarge")["securityContext"]["capabilities"]


def test_the_neuron_overlay_runs_neuron_monitors_exporter_on_its_nodes_and_prometheus_scrapes_it() -> None:
    """The Neuron docs' DaemonSet (public.ecr.aws/neuron/neuron-monitor, port 8000) on the fleet's node type."""
    (daemonset,) = objects("neuron-inf2-xlarge", "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (monitor,) = pod["containers"]
    assert monitor["image"].startswith("public.ecr.aws/neuron/neuron-monitor:")
    assert {p["name"]: p["containerPort"] for p in monitor["ports"]} == {"metrics": 8000}
    (deployment,) = objects("neuron-inf2-xlarge", "Deployment")
    fleet_nodes = deployment["spec"]["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]
    assert pod["nodeSelector"]["node.kubernetes.io/instance-type"] == fleet_nodes
    (scrape,) = [m for m in objects("neuron-inf2-xlarge", "PodMonitor") if m["metadata"]["name"].endswith("monitor")]
    assert (
        scrape["spec"]["selector"]["matchLabels"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [e["port"] for e in scrape["spec"]["podMetricsEndpoints"]] == ["metrics"]
    skipped = {value.split("=")[0] for key, value in daemonset["metadata"]["annotations"].items() if "checkov" in key}
    assert skipped and all("=" in value for value in daemonset["metadata"]["annotations"].values()), (
        "each skip says why"
    )
    assert not objects("gpu-g5-xlarge", "DaemonSet"), "the GPU fleet has none"
