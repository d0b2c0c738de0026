"""The service's alert rules (deploy/kubernetes/base/monitoring/prometheusrule.yaml) as Prometheus reads them:
``promtool check rules`` on the rule groups, and ``promtool test rules`` on series written here, each alert once
where it must fire and once where it must not.

The unit tests compare alerts by name and labels; the annotations are left out of the tested copy (promtool
compares them whole, and their templates are what ``check rules`` validates).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

RULES = ROOT / "deploy" / "kubernetes" / "base" / "monitoring" / "prometheusrule.yaml"
PROMTOOL = shutil.which("promtool")


def groups() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    assert document["kind"] == "PrometheusRule" and document["apiVersion"] == "monitoring.coreos.com/v1"
    return document["spec"]["groups"]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for group in groups() for rule in group["rules"] if "alert" in rule}


def case(interval: str, series: dict[str, str], eval_time: str, alert: str, fired: list[dict]) -> dict:
    """One promtool test: ``series`` (name{labels} -> promtool's value notation), ``alert`` at ``eval_time``, and
    the label sets of the alerts expected to fire (each with the rule's own labels)."""
    labels = alerts()[alert].get("labels", {})
    return {
        "interval": interval,
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {"eval_time": eval_time, "alertname": alert, "exp_alerts": [{"exp_labels": labels | f} for f in fired]}
        ],
    }


API = 'pod="blip-api-1"'
FLEET = 'namespace="blip",pod="neuron-blip-fleet-1"'
DAY_THEN_HOURS = "0+{day}x144 {start}+{then}x12"  # 10-minute samples: 24 h at one rate, then 2 h at another


def day_then(day: int, then: int) -> str:
    return DAY_THEN_HOURS.format(day=day, start=144 * day + then, then=then)


CASES = {
    "no healthy fleet fires": case(
        "1m",
        {f'blip_router_healthy{{backend="neuron",{API}}}': "1 0x10", f'blip_router_healthy{{backend="gpu",{API}}}': "0x11"},
        "5m", "BlipNoHealthyFleet", [{}],
    ),
    "one healthy fleet is enough": case(
        "1m",
        {f'blip_router_healthy{{backend="neuron",{API}}}': "1x10", f'blip_router_healthy{{backend="gpu",{API}}}': "0x10"},
        "5m", "BlipNoHealthyFleet", [],
    ),
    "2% answered 503 fires": case(
        "1m",
        {f'blip_api_requests_total{{status="200",{API}}}': "0+98x30", f'blip_api_requests_total{{status="503",{API}}}': "0+2x30"},
        "20m", "BlipFrames503", [{}],
    ),
    "0.5% answered 503 does not": case(
        "1m",
        {f'blip_api_requests_total{{status="200",{API}}}': "0+199x30", f'blip_api_requests_total{{status="503",{API}}}': "0+1x30"},
        "20m", "BlipFrames503", [],
    ),
    "p99 near 1 s fires for its fleet": case(
        "1m",
        {
            f'blip_router_request_seconds_bucket{{backend="neuron",le="0.25",{API}}}': "0+10x30",
            f'blip_router_request_seconds_bucket{{backend="neuron",le="0.5",{API}}}': "0+10x30",
            f'blip_router_request_seconds_bucket{{backend="neuron",le="1.0",{API}}}': "0+100x30",
            f'blip_router_request_seconds_bucket{{backend="neuron",le="+Inf",{API}}}': "0+100x30",
            f'blip_router_request_seconds_bucket{{backend="gpu",le="0.25",{API}}}': "0+100x30",
            f'blip_router_request_seconds_bucket{{backend="gpu",le="+Inf",{API}}}': "0+100x30",
        },
        "25m", "BlipLatencyOverSlo", [{"backend": "neuron"}],
    ),
    "five recoveries in an hour fire": case(
        "1m",
        {f'blip_supervisor_recoveries_total{{reason="stub",action="reload",{FLEET}}}': "0 1 2 3 4 5"},
        "5m", "BlipStubRecoveries", [{"namespace": "blip", "pod": "neuron-blip-fleet-1"}],
    ),
    "one recovery does not": case(
        "1m",
        {f'blip_supervisor_recoveries_total{{reason="stub",action="reload",{FLEET}}}': "0 0 1 1 1 1"},
        "5m", "BlipStubRecoveries", [],
    ),
    "200 ms in the queue fires": case(
        "1m",
        {
            f'nv_inference_queue_duration_us{{model="blip_vqa",{FLEET}}}': "0+12000000x30",
            f'nv_inference_request_success{{model="blip_vqa",{FLEET}}}': "0+60x30",
        },
        "20m", "BlipQueueTime", [{"namespace": "blip", "pod": "neuron-blip-fleet-1", "model": "blip_vqa"}],
    ),
    "10 ms in the queue does not": case(
        "1m",
        {
            f'nv_inference_queue_duration_us{{model="blip_vqa",{FLEET}}}': "0+600000x30",
            f'nv_inference_request_success{{model="blip_vqa",{FLEET}}}': "0+60x30",
        },
        "20m", "BlipQueueTime", [],
    ),
    "a notification waiting 10 minutes fires": case(
        "1m", {f"blip_outbox_oldest_pending_seconds{{{API}}}": "0+60x15"}, "13m", "BlipNotificationsLate", [{}]
    ),
    "notifications delivered in seconds do not": case(
        "1m", {f"blip_outbox_oldest_pending_seconds{{{API}}}": "3x15"}, "13m", "BlipNotificationsLate", []
    ),
    "a dead delivery fires": case(
        "1m", {f'blip_deliveries_total{{result="dead",{API}}}': "0 0 1 1"}, "3m", "BlipDeliveriesDead", [{}]
    ),
    "retried deliveries do not": case(
        "1m",
        {f'blip_deliveries_total{{result="dead",{API}}}': "0x3", f'blip_deliveries_total{{result="retried",{API}}}': "0+5x3"},
        "3m", "BlipDeliveriesDead", [],
    ),
    "barking events at 30x yesterday's rate fire, eating at its usual rate does not": case(
        "10m",
        {
            f'blip_events_total{{behavior="barking",transition="started",{API}}}': day_then(1, 30),
            f'blip_events_total{{behavior="eating",transition="started",{API}}}': day_then(5, 5),
        },
        "26h", "BlipEventRateJump", [{"behavior": "barking"}],
    ),
    "a jump on a handful of events does not": case(
        "10m",
        {f'blip_events_total{{behavior="barking",transition="started",{API}}}': day_then(0, 1)},
        "26h", "BlipEventRateJump", [],
    ),
    "the alerting share moving from 10% to 50% fires": case(
        "10m",
        {
            f'blip_behavior_results_total{{behavior="barking",alert="true",{API}}}': day_then(10, 50),
            f'blip_behavior_results_total{{behavior="barking",alert="false",{API}}}': day_then(90, 50),
            f'blip_behavior_results_total{{behavior="eating",alert="true",{API}}}': day_then(10, 10),
            f'blip_behavior_results_total{{behavior="eating",alert="false",{API}}}': day_then(90, 90),
        },
        "26h", "BlipAlertShareShift", [{"behavior": "barking"}],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory) -> Path:
    """The groups as a rule file, and a copy without annotations for the unit tests."""
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": groups()}))
    bare = [
        {**group, "rules": [{k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]]}
        for group in groups()
    ]
    (folder / "bare.yaml").write_text(yaml.safe_dump({"groups": bare}))
    return folder


def test_promtool_checks_the_rules(rule_files: Path) -> None:
    result = promtool("check", "rules", "rules.yaml", cwd=rule_files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout, result.stdout


def test_every_alert_has_a_case_that_fires_and_each_has_a_runbook() -> None:
    fired = {
        test["alert_rule_test"][0]["alertname"] for test in CASES.values() if test["alert_rule_test"][0]["exp_alerts"]
    }
    assert fired == set(alerts()), f"alerts without a firing case: {set(alerts()) - fired}"
    runbooks = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert all(f"### {name}" in runbooks for name in alerts()), "each alert has a section in docs/troubleshooting.md"


@pytest.mark.parametrize("name", list(CASES))
def test_promtool_unit_tests_the_alert(rule_files: Path, name: str) -> None:
    tests = {"rule_files": ["bare.yaml"], "evaluation_interval": "1m", "tests": [CASES[name]]}
    path = rule_files / f"test-{abs(hash(name))}.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", path.name, cwd=rule_files)
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
