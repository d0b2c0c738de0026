"""docs/kubernetes.md's EKS walk, replayed offline in its documented order.

Each numbered step's bash block is read command by command. What a command creates comes from the rendered overlay
or manifest it applies, from ``kubectl create``, or, for a Helm chart, from what the chart is documented to install
(``CHARTS``). What an object needs comes from the object itself: its namespace, its pods' claims, Secrets,
ConfigMaps, ServiceAccount and extended resources, a PVC's StorageClass, an Ingress's class and Service, an HPA's
external metric and target, the Service a perf Job measures, and any kind that is not built in. A step may use what
it creates itself or what an earlier step created; anything else fails the test, naming the step and the object.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from functools import cache

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

DOC = ROOT / "docs" / "kubernetes.md"
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"

# Kinds the API server has without any CRD (those the manifests use).
BUILT_IN_KINDS = {
    "Namespace",
    "Deployment",
    "DaemonSet",
    "Service",
    "Job",
    "PersistentVolumeClaim",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
    "StorageClass",
}
# Objects that exist in every cluster.
PRESENT = {("ServiceAccount", "default")}
# What each Helm chart of the walk installs that the manifests rely on (its documentation's list of CRDs, resources
# and classes), by chart reference.
CHARTS: dict[str, set[tuple[str, str]]] = {
    "oci://public.ecr.aws/neuron/neuron-helm-chart": {
        ("ExtendedResource", "aws.amazon.com/neuroncore"),
        ("ExtendedResource", "aws.amazon.com/neuron"),
    },
    "nvdp/nvidia-device-plugin": {("ExtendedResource", "nvidia.com/gpu")},
    "aws-efs-csi-driver/aws-efs-csi-driver": {("CSIDriver", "efs.csi.aws.com")},
    "prometheus-community/kube-prometheus-stack": {
        ("CRD", kind)
        for kind in ("PodMonitor", "ServiceMonitor", "PrometheusRule", "Prometheus", "Alertmanager", "Probe")
    },
    "prometheus-community/prometheus-adapter": {("API", "external.metrics.k8s.io")},
    "eks/aws-load-balancer-controller": {
        ("IngressClass", "alb"),
        ("CRD", "TargetGroupBinding"),
        ("CRD", "IngressClassParams"),
    },
}
# Commands that look or wait and create nothing: the checks at the end of each step, and the tools' own set-up.
CHECKS = (
    ("kubectl", "get"),
    ("kubectl", "wait"),
    ("kubectl", "rollout"),
    ("kubectl", "logs"),
    ("helm", "repo"),
    ("make", "capacity"),
    ("tail",),
    ("grep",),
)


@dataclass
class Step:
    title: str
    commands: list[str]


@dataclass
class Applied:
    """What one step creates and what it needs, as (kind, name) pairs; needs carry the object that needs them."""

    creates: set[tuple[str, str]] = field(default_factory=set)
    needs: list[tuple[tuple[str, str], str]] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)


def walk_steps(text: str) -> list[Step]:
    """The numbered steps of "## The EKS walk", each with the commands of its bash blocks (continuations joined,
    comments dropped)."""
    section = text.split("## The EKS walk", 1)[1].split("\n## ", 1)[0]
    steps = []
    for match in re.finditer(r"^### (\d+)\. (.+?)\n(.*?)(?=^### |\Z)", section, re.S | re.M):
        number, title, body = match.groups()
        assert int(number) == len(steps) + 1, f"step {number} is out of sequence"
        commands = []
        for block in re.findall(r"```bash\n(.*?)```", body, re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.split("   #", 1)[0].strip()
                if line:
                    commands += [part.strip() for part in line.split(" && ")]
        steps.append(Step(f"{number}. {title}", commands))
    return steps


@cache
def render(overlay: str) -> tuple[dict, ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _option(words: list[str], *names: str) -> str | None:
    for index, word in enumerate(words):
        if word in names and index + 1 < len(words):
            return words[index + 1]
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def _pod_needs(doc: dict) -> list[tuple[str, str]]:
    template = doc["spec"].get("template") or {}
    spec = (template.get("spec") if template else None) or {}
    needs = [("ServiceAccount", spec.get("serviceAccountName", "default"))]
    for volume in spec.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            needs.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        if "configMap" in volume and not volume["configMap"].get("optional"):
            needs.append(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume and not volume["secret"].get("optional"):
            needs.append(("Secret", volume["secret"]["secretName"]))
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if key in source and not source[key].get("optional"):
                    needs.append((kind, source[key]["name"]))
            if env["name"] == "BLIP_FLEET_URL":  # the perf Job measures this Service
                needs.append(("Service", env["value"].rsplit(":", 1)[0]))
        for source in container.get("envFrom", []):
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if key in source and not source[key].get("optional"):
                    needs.append((kind, source[key]["name"]))
        resources = container.get("resources", {})
        for name in {**resources.get("requests", {}), **resources.get("limits", {})}:
            if "/" in name:
                needs.append(("ExtendedResource", name))
    return needs


def object_needs(doc: dict) -> list[tuple[str, str]]:
    kind, spec = doc["kind"], doc.get("spec") or {}
    needs = [] if kind in BUILT_IN_KINDS else [("CRD", kind)]
    if kind in ("Deployment", "Job"):
        needs += _pod_needs(doc)
    if kind == "PersistentVolumeClaim" and spec.get("storageClassName"):
        needs.append(("StorageClass", spec["storageClassName"]))
    if kind == "StorageClass":
        needs.append(("CSIDriver", doc["provisioner"]))
    if kind == "Ingress":
        needs.append(("IngressClass", spec["ingressClassName"]))
        for rule in spec.get("rules", []):
            for path in rule["http"]["paths"]:
                needs.append(("Service", path["backend"]["service"]["name"]))
    if kind == "HorizontalPodAutoscaler":
        needs.append((spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"]))
        if any(metric["type"] == "External" for metric in spec.get("metrics", [])):
            needs.append(("API", "external.metrics.k8s.io"))
    return needs


def _objects(docs: tuple[dict, ...] | list[dict], namespace: str | None, applied: Applied, what: str) -> None:
    if namespace:
        applied.needs.append((("Namespace", namespace), what))
    for doc in docs:
        name = doc["metadata"]["name"]
        applied.creates.add((doc["kind"], name))
        if doc["kind"] == "StorageClass":
            assert doc["parameters"].get("fileSystemId"), "the StorageClass names its file system"
        applied.needs += [(need, f"{what}: {doc['kind']} {name}") for need in object_needs(doc)]


def _words(command: str) -> list[str]:
    """The command's words without its namespace option, so that `kubectl -n blip get` reads as `kubectl get`."""
    words, kept, skip = shlex.split(command), [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("-n", "--namespace"):
            skip = True
        elif not word.startswith("--namespace="):
            kept.append(word)
    return kept


def apply_command(command: str, applied: Applied) -> None:
    """What one command of the walk creates and needs; an unknown command fails the test."""
    if "| kubectl apply" in command:
        render_part, apply_part = command.split("|", 1)
        words = shlex.split(render_part)
        assert words[:2] == ["make", "k8s-render"], f"only make k8s-render's output is piped to kubectl: {command}"
        overlay = next(word.split("=", 1)[1] for word in words if word.startswith("OVERLAY="))
        applied.overlays.append(overlay)
        namespace = _option(shlex.split(apply_part), "-n", "--namespace")
        _objects(render(overlay), namespace, applied, f"overlay {overlay}")
        return
    words = _words(command)
    namespace = _option(shlex.split(command), "-n", "--namespace")
    if words[:2] == ["kubectl", "apply"]:
        path = ROOT / _option(words, "-f")
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for doc in docs:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        _objects(docs, namespace, applied, str(path.relative_to(ROOT)))
        return
    if words[:2] == ["kubectl", "create"]:
        rest = words[2:]
        if rest[0] == "namespace":
            applied.creates.add(("Namespace", rest[1]))
            return
        kind = {"secret": "Secret", "configmap": "ConfigMap", "serviceaccount": "ServiceAccount"}[rest[0]]
        name = rest[2] if rest[0] == "secret" else rest[1]
        applied.creates.add((kind, name))
        if namespace:
            applied.needs.append((("Namespace", namespace), f"{kind} {name}"))
        return
    if words[:3] == ["helm", "upgrade", "--install"]:
        chart = words[4]
        assert chart in CHARTS, f"the walk installs {chart}, whose objects the test does not know"
        applied.creates |= CHARTS[chart]
        if namespace and "--create-namespace" in words:
            applied.creates.add(("Namespace", namespace))
        elif namespace and namespace != "kube-system":
            applied.needs.append((("Namespace", namespace), f"helm release {words[3]}"))
        for values in [_option(words[i:], "-f") for i, word in enumerate(words) if word == "-f"]:
            assert (ROOT / values).is_file(), f"{values} is not in the repository"
        return
    if any(tuple(words[: len(check)]) == check for check in CHECKS):
        return
    raise AssertionError(f"the walk runs a command the test does not know: {command}")


def unmet(steps: list[Step]) -> list[str]:
    """Every need no earlier step (or the same one) creates, as "step: what needs kind name"."""
    created = set(PRESENT)
    problems = []
    for step in steps:
        applied = Applied()
        for command in step.commands:
            apply_command(command, applied)
        created |= applied.creates
        problems += [
            f"step {step.title}: {what} needs {kind} {name}"
            for (kind, name), what in applied.needs
            if (kind, name) not in created
        ]
    return problems


def applied_overlays(steps: list[Step]) -> list[str]:
    applied = Applied()
    for step in steps:
        for command in step.commands:
            if "| kubectl apply" in command:
                apply_command(command, applied)
    return applied.overlays


@pytest.fixture(scope="module")
def steps() -> list[Step]:
    return walk_steps(DOC.read_text())


def test_every_step_of_the_walk_needs_only_what_an_earlier_step_created(steps) -> None:
    assert len(steps) >= 10
    assert unmet(steps) == []


def test_the_walk_applies_every_overlay_once(steps) -> None:
    overlays = applied_overlays(steps)
    assert sorted(overlays) == sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
    assert len(overlays) == len(set(overlays))


def test_every_step_ends_with_a_check(steps) -> None:
    for step in steps:
        last = _words(step.commands[-1])
        assert any(tuple(last[: len(check)]) == check for check in CHECKS[:4]), f"step {step.title} checks nothing"


def _moved(steps: list[Step], title: str, before: str) -> list[Step]:
    """The walk with the step titled ``title`` moved just before the one titled ``before`` (titles without numbers)."""

    def titled(step: Step, name: str) -> bool:
        return step.title.split(". ", 1)[1] == name

    (moving,) = [s for s in steps if titled(s, title)]
    rest = [s for s in steps if s is not moving]
    (index,) = [i for i, s in enumerate(rest) if titled(s, before)]
    return [*rest[:index], moving, *rest[index:]]


@pytest.mark.parametrize(
    ("title", "before", "message"),
    [
        (
            "The artifact builds, and the version each fleet serves",
            "The model volumes",
            "Job neuron-blip-build needs PersistentVolumeClaim neuron-blip-model",
        ),
        (
            "The model volumes",
            "EFS CSI and its StorageClass",
            "PersistentVolumeClaim neuron-blip-model needs StorageClass efs-sc",
        ),
        (
            "The fleets",
            "The artifact builds, and the version each fleet serves",
            "Deployment neuron-blip-fleet needs ConfigMap neuron-blip-model-version",
        ),
        (
            "The fleets",
            "Prometheus and the prometheus-operator CRDs",
            "PodMonitor neuron-blip-fleet needs CRD PodMonitor",
        ),
        (
            "The fleets",
            "The Neuron device plugin and scheduler extension",
            "Deployment neuron-blip-fleet needs ExtendedResource aws.amazon.com/neuroncore",
        ),
        ("Each fleet measured as deployed", "The fleets", "Job neuron-blip-perf needs Service neuron-blip-fleet"),
        (
            "The autoscaling targets: the UNMEASURED placeholder replaced",
            "The fleets",
            "HorizontalPodAutoscaler neuron-blip-fleet needs Deployment neuron-blip-fleet",
        ),
        (
            "The autoscaling targets: the UNMEASURED placeholder replaced",
            "prometheus-adapter: the external metric the fleets' HPAs read",
            "needs API external.metrics.k8s.io",
        ),
        ("The API tier", "The API tier's secrets", "Deployment blip-api needs Secret blip-api-tokens"),
        (
            "The API tier",
            "An ingress with TLS: the AWS Load Balancer Controller",
            "Ingress blip-api needs IngressClass alb",
        ),
        ("The namespace", "The model volumes", "Secret blip-api-tokens needs Namespace blip"),
    ],
)
def test_a_planted_reordering_fails_naming_what_is_missing(steps, title, before, message) -> None:
    problems = unmet(_moved(steps, title, before))
    assert any(message in problem for problem in problems), problems
