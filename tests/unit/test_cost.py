"""``make cost`` end to end: from perf summaries and a price list to instances, $/h, $ per million, savings.

The perf summaries here are the committed ``perf-cpu.json`` with its knee changed, so the reader sees the real
format; the expected figures are worked out by hand in each test. The committed ``cost.json`` must be what the
command writes from the committed inputs today.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from blip_serving.capacity import (
    FLEETS,
    PRICES,
    RESULTS,
    CapacityError,
    Measured,
    fleet_costs,
    load_prices,
    main_capacity,
    main_cost,
    per_pod_target,
    read_perf,
)

PRICE_LIST = """[catalog]
kind = "test prices"
source = "tests/unit/test_cost.py"
retrieved = "2026-11-29"

[prices]
"inf2.xlarge" = 0.758
"g5.xlarge" = 1.006
"""


def perf_summary(
    path: Path,
    fps: float,
    p99_ms: float = 900.0,
    questions: int = 3,
    knee: bool = True,
    target: str = "cpu",
    host_type: str | None = "fleet's",
) -> Path:
    """The committed summary with its figures replaced; measured on the target's fleet's host type unless told."""
    data = json.loads((RESULTS / "perf-cpu.json").read_text())
    data["questions_per_frame"] = questions
    data["target"] = target
    data["host_type"] = FLEETS[target]["host"] if host_type == "fleet's" else host_type
    data["knee"] = (data["knee"] | {"throughput": fps, "p99_ms": p99_ms}) if knee else None
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICE_LIST)
    return path


def test_priced_fleets_get_instances_with_a_spare_dollars_per_million_and_savings(tmp_path, prices) -> None:
    measured = {
        "neuron": read_perf(perf_summary(tmp_path / "n.json", 20.0)),
        "gpu": read_perf(perf_summary(tmp_path / "g.json", 25.0, questions=4)),
        "cpu": None,
    }
    neuron, gpu, cpu = fleet_costs(measured, load_prices(prices), rate=50.0)
    # 50 / 20 = 2.5 -> 3 instances, plus a spare; 0.758 $/h / (20 * 3600) frames = $10.53 per million frames.
    assert neuron | {"source": None} == {
        "fleet": "neuron",
        "host": "inf2.xlarge",
        "price_per_hour": 0.758,
        "status": "measured",
        "source": None,
        "fps_per_instance": 20.0,
        "p99_ms": 900.0,
        "slo_ms": 2000.0,
        "instances_for_rate": 4,
        "dollars_per_hour": 3.032,
        "dollars_per_million_frames": 10.53,
        "dollars_per_million_questions": 3.51,
        "saving_vs": {"gpu": 0.058},  # 1 - 10.53 / 11.18
    }
    # 50 / 25 = 2 exactly -> 2 instances, plus a spare; 1.006 / (25 * 3600) = $11.18 per million; 4 questions a frame.
    assert (gpu["instances_for_rate"], gpu["dollars_per_hour"]) == (3, 3.018)
    assert (gpu["dollars_per_million_frames"], gpu["dollars_per_million_questions"]) == (11.18, 2.79)
    assert gpu["saving_vs"] == {"neuron": -0.062}
    assert cpu == {"fleet": "cpu", "host": "local", "price_per_hour": None, "status": "not measured"}


def test_a_measured_fleet_without_a_price_says_so_and_is_left_out_of_savings(tmp_path, prices) -> None:
    measured = {
        "neuron": read_perf(perf_summary(tmp_path / "n.json", 4.0)),
        "gpu": None,
        "cpu": read_perf(perf_summary(tmp_path / "c.json", 1.5)),
    }
    neuron, gpu, cpu = fleet_costs(measured, load_prices(prices), rate=10.0)
    assert cpu["status"] == "measured, no price" and cpu["instances_for_rate"] == 8  # ceil(6.67) + 1
    assert not {"dollars_per_hour", "dollars_per_million_frames", "saving_vs"} & set(cpu)
    assert gpu["status"] == "not measured" and gpu["price_per_hour"] == 1.006
    assert neuron["saving_vs"] == {}, "nothing priced to compare with"
    assert neuron["instances_for_rate"] == 4  # 10 / 4 = 2.5 -> 3, plus a spare


def test_make_cost_prints_the_table_and_writes_what_it_printed(tmp_path, prices, capsys) -> None:
    out = tmp_path / "cost.json"
    code = main_cost(
        [
            "--perf",
            f"neuron={perf_summary(tmp_path / 'n.json', 20.0)}",
            "--perf",
            f"gpu={perf_summary(tmp_path / 'g.json', 25.0)}",
            "--perf",
            f"cpu={perf_summary(tmp_path / 'c.json', 1.5)}",
            "--rate",
            "50",
            "--prices",
            str(prices),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert printed[0] == "cost for 50 frames/s; prices: test prices, tests/unit/test_cost.py (retrieved 2026-11-29)"
    rows = {line.split()[0]: line.split() for line in printed[2:5]}
    assert rows["neuron"] == ["neuron", "inf2.xlarge", "20.000", "4", "3.032", "10.53", "3.51"]
    assert rows["gpu"] == ["gpu", "g5.xlarge", "25.000", "3", "3.018", "11.18", "3.73"]
    assert rows["cpu"] == ["cpu", "local", "1.500", "35", "no", "price", "for", "local"]
    assert "neuron against gpu: +6% per frame" in printed and "gpu against neuron: -6% per frame" in printed
    written = json.loads(out.read_text())
    assert written["rate"] == 50.0 and written["prices"]["kind"] == "test prices"
    assert [row["fleet"] for row in written["fleets"]] == ["neuron", "gpu", "cpu"]
    assert written["fleets"][0]["dollars_per_million_frames"] == 10.53


def test_a_fleet_whose_perf_file_is_missing_is_not_measured(tmp_path, prices, capsys) -> None:
    out = tmp_path / "new" / "folder" / "cost.json"
    assert main_cost(["--perf", f"gpu={tmp_path / 'absent.json'}", "--prices", str(prices), "--out", str(out)]) == 0
    assert "gpu     g5.xlarge       not measured" in capsys.readouterr().out
    assert {row["status"] for row in json.loads(out.read_text())["fleets"]} == {"not measured"}


def test_the_committed_cost_json_is_what_make_cost_writes_from_the_committed_inputs(tmp_path, capsys) -> None:
    out = tmp_path / "cost.json"
    assert main_cost(["--out", str(out)]) == 0  # the defaults: make cost's RATE 10, deploy/prices.toml, results
    assert out.read_text() == (RESULTS / "cost.json").read_text(), "byte for byte, as committed"
    assert json.loads(out.read_text())["prices"] == load_prices(PRICES).catalog.model_dump()


@pytest.mark.parametrize(
    ("argument", "message"),
    [("tpu=x.json", "unknown fleet 'tpu'; expected one of neuron, gpu, cpu"), ("cpu=KNEELESS", "no knee to size")],
)
def test_bad_cost_inputs_are_refused_in_one_line(tmp_path, capsys, argument, message) -> None:
    argument = argument.replace("KNEELESS", str(perf_summary(tmp_path / "k.json", 1.0, knee=False)))
    assert main_cost(["--perf", argument, "--out", str(tmp_path / "cost.json")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "cost.json").exists()


def test_the_hpa_target_is_the_knee_times_the_headroom_written_to_the_measured_fleets_overlay_only(
    tmp_path, capsys
) -> None:
    measured = read_perf(perf_summary(tmp_path / "n.json", 20.0, target="neuron"))
    assert per_pod_target(measured, 0.7) == 14.0 and per_pod_target(measured, 1.0) == 20.0
    for headroom in (0.0, 1.01, -0.5):
        with pytest.raises(CapacityError, match=f"headroom must be in \\(0, 1\\], got {headroom}"):
            per_pod_target(measured, headroom)
    overlays = tmp_path / "overlays"
    for name in ("neuron-inf2-xlarge-autoscaling", "gpu-g5-xlarge-autoscaling"):
        (overlays / name).mkdir(parents=True)
    code = main_capacity(["--perf", str(tmp_path / "n.json"), "--headroom", "0.5", "--overlays", str(overlays)])
    assert code == 0 and "x headroom 0.5 = 10 frames/s per pod" in capsys.readouterr().out
    patch = yaml.safe_load((overlays / "neuron-inf2-xlarge-autoscaling" / "capacity.yaml").read_text())
    (metric,) = patch["spec"]["metrics"]
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "10"}, "a quantity string"
    assert metric["external"]["metric"]["selector"] == {"matchLabels": {"backend": "neuron"}}
    assert not (overlays / "gpu-g5-xlarge-autoscaling" / "capacity.yaml").exists(), (
        "a neuron measurement never sizes the gpu fleet"
    )
    # A cpu measurement sizes no overlay; the placeholder is written only when asked for.
    assert main_capacity(["--perf", str(perf_summary(tmp_path / "c.json", 5.0)), "--overlays", str(overlays)]) == 2
    assert main_capacity(["--unmeasured", "gpu", "--overlays", str(overlays)]) == 0
    assert "NOT MEASURED" in (overlays / "gpu-g5-xlarge-autoscaling" / "capacity.yaml").read_text()


def test_read_perf_takes_the_knee_and_its_source(tmp_path) -> None:
    data = json.loads((RESULTS / "perf-cpu.json").read_text())
    path = tmp_path / "perf.json"
    del data["questions_per_frame"], data["knee"]["layout"]  # older summaries: 3 questions, ensemble layout
    path.write_text(json.dumps(data))
    measured = read_perf(path)
    machine = data["machine"]
    assert measured == Measured(
        source=f"perf.json ({machine['cpu']}, {machine['cores']} cores, {data['model']})",
        target="cpu",
        fps=data["knee"]["throughput"],
        p99_ms=data["knee"]["p99_ms"],
        slo_ms=data["slo_ms"],
        questions_per_frame=3,
        layout="ensemble",
        instances=data["knee"]["instances"],
        host_type=None,
    )
    data["knee"]["layout"] = "colocated"
    path.write_text(json.dumps(data))
    assert read_perf(path).layout == "colocated"
    data["knee"] = None
    path.write_text(json.dumps(data))
    with pytest.raises(CapacityError, match=f"^{path}: no point kept p99 under 2000.0 ms, so there is no knee"):
        read_perf(path)


def test_cost_figures_keep_their_precision(tmp_path) -> None:
    """Rounding is to the cent per million and to 1/10000 $ per hour, after the arithmetic, not before."""
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICE_LIST.replace("0.758", "0.75812345"))
    slow = read_perf(perf_summary(tmp_path / "n.json", 0.01))
    (row, _, _) = fleet_costs({"neuron": slow, "gpu": None, "cpu": None}, load_prices(prices), rate=0.03)
    assert row["instances_for_rate"] == 4 and row["dollars_per_hour"] == 3.0325  # 4 x 0.75812345 = 3.0324938
    assert row["dollars_per_million_frames"] == 21058.98  # 0.75812345 / 36 x 1e6
    assert row["dollars_per_million_questions"] == 7019.66
    assert per_pod_target(read_perf(RESULTS / "perf-cpu.json"), 0.7) == 0.988  # 1.41138 x 0.7


def test_the_table_goes_on_after_a_fleet_without_a_price(tmp_path, capsys) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICE_LIST.replace('"g5.xlarge" = 1.006\n', ""))
    weird = tmp_path / "a=b"  # a path with '=' in it: only the first one splits fleet from path
    weird.mkdir()
    args = [
        "--perf",
        f"gpu={perf_summary(weird / 'g.json', 2.0)}",
        "--perf",
        f"cpu={perf_summary(tmp_path / 'c.json', 1.0)}",
    ]
    assert main_cost([*args, "--prices", str(prices), "--out", str(tmp_path / "cost.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "fleet   host           frames/s/inst instances      $/h  $/M frames $/M questions"
    assert lines[2:5] == [
        "neuron  inf2.xlarge     not measured",
        "gpu     g5.xlarge              2.000         6             no price for g5.xlarge",
        "cpu     local                  1.000        11                 no price for local",
    ]


def test_make_capacity_writes_the_measured_fleets_overlay_and_refuses_a_kneeless_result(tmp_path, capsys) -> None:
    overlays = tmp_path / "overlays"
    for name in ("neuron-inf2-xlarge-autoscaling", "gpu-g5-xlarge-autoscaling"):
        (overlays / name).mkdir(parents=True)
    perf = perf_summary(tmp_path / "g.json", 20.0, target="gpu")
    assert main_capacity(["--perf", str(perf), "--overlays", str(overlays)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "knee 20 frames/s (p99 900 ms <= 2000 ms, ensemble) x headroom 0.7 = 14 frames/s per pod",
        f"wrote {overlays / 'gpu-g5-xlarge-autoscaling' / 'capacity.yaml'}",
    ]
    patch = (overlays / "gpu-g5-xlarge-autoscaling" / "capacity.yaml").read_text()
    assert patch.startswith(f"# Written by `make capacity` on {time.strftime('%Y-%m-%d')}: the HPA's per-pod target.")
    assert not (overlays / "neuron-inf2-xlarge-autoscaling" / "capacity.yaml").exists(), "only the measured fleet"
    kneeless = perf_summary(tmp_path / "k.json", 1.0, knee=False, target="gpu")
    assert main_capacity(["--perf", str(kneeless), "--overlays", str(overlays)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {kneeless}: no point kept p99 under")
    assert main_capacity(["--perf", str(perf), "--headroom", "1.5", "--overlays", str(overlays)]) == 2
    assert "error: headroom must be in (0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host_type", "message"),
    [
        (
            "inf2.24xlarge",
            "measured host type inf2.24xlarge, but overlays/neuron-inf2-xlarge runs inf2.xlarge: a target measured on "
            "other hardware is never written",
        ),
        ("local", "measured host type local, but overlays/neuron-inf2-xlarge runs inf2.xlarge"),
        (None, "records no host type (it is older than the field): run make perf again on inf2.xlarge"),
    ],
)
def test_make_capacity_writes_an_overlay_only_from_a_summary_of_its_host_type(
    tmp_path, capsys, host_type, message
) -> None:
    """An inf2.24xlarge run of the neuron target is not an inf2.xlarge pod's figure: refused, nothing written."""
    overlays = tmp_path / "overlays"
    (overlays / "neuron-inf2-xlarge-autoscaling").mkdir(parents=True)
    other = perf_summary(tmp_path / "n.json", 90.0, target="neuron", host_type=host_type)
    assert main_capacity(["--perf", str(other), "--overlays", str(overlays)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {other} {message}") and err.count("\n") == 1, err
    assert not list(overlays.rglob("capacity.yaml"))
    same = perf_summary(tmp_path / "m.json", 90.0, target="neuron", host_type="inf2.xlarge")
    assert main_capacity(["--perf", str(same), "--overlays", str(overlays)]) == 0
    assert "averageValue: '63'" in (overlays / "neuron-inf2-xlarge-autoscaling" / "capacity.yaml").read_text()


def test_make_capacity_refuses_the_committed_cpu_result_for_every_overlay(tmp_path, capsys) -> None:
    (tmp_path / "neuron-inf2-xlarge-autoscaling").mkdir()
    assert main_capacity(["--overlays", str(tmp_path)]) == 2
    assert "measured the cpu target, which no overlay runs" in capsys.readouterr().err
    assert not list(tmp_path.rglob("capacity.yaml"))
    with pytest.raises(SystemExit):
        main_capacity(["--overlays", str(tmp_path), "--unmeasured", "cpu"])  # no overlay: not a choice


def test_an_unknown_key_in_the_price_list_is_refused_with_the_nearest_name(tmp_path) -> None:
    planted = tmp_path / "prices.toml"
    planted.write_text(PRICES.read_text().replace("retrieved =", "retreived =", 1))
    with pytest.raises(CapacityError) as raised:
        load_prices(planted)
    assert str(raised.value).startswith(
        f"{planted}: catalog.retreived is not a setting (did you mean catalog.retrieved?)"
    )


def test_an_unknown_key_in_a_perf_summary_is_refused_with_the_nearest_name(tmp_path) -> None:
    path = perf_summary(tmp_path / "perf.json", 20.0)
    path.write_text(path.read_text().replace('"slo_ms":', '"slo_msec":', 1))
    with pytest.raises(CapacityError) as raised:
        read_perf(path)
    assert str(raised.value).startswith(f"{path}: slo_msec is not a setting (did you mean slo_ms?)")
