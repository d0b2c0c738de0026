"""`make bench` and `make perf` end to end on random-tiny (bench: from a local checkpoint directory): the real server, tritonclient and perf_analyzer.

Figures are not asserted (they belong to the benchmark run); what is asserted is that every figure is
produced, from real measurements, in the files docs/performance.md points to.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil

from blip_bench import bench, host, perf, pixels
from blip_serving.capacity import main_capacity
from blip_serving.perf_summary import PerfSummary


def test_perf_sweeps_with_perf_analyzer_and_writes_csv_chart_and_knee(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    args = ["--model", "random-tiny", "--workspace", str(tmp_path / "ws"), "--out", str(out)]
    sweep = ["--layouts", "ensemble,colocated", "--instances", "1,2", "--concurrency", "1,2"]
    assert perf.main([*args, *sweep, "--slo-ms", "5000", "--rate", "1"]) == 0
    printed = capsys.readouterr().out
    assert [f"[{i}/8] " in printed for i in range(1, 9)] == [True] * 8, "a progress line per point"
    with (out / "perf-cpu.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["layout"], r["instances"], r["concurrency"]) for r in rows] == [
        (layout, instances, concurrency)
        for layout in ("ensemble", "colocated")
        for instances in ("1", "2")
        for concurrency in ("1", "2")
    ]
    assert all(float(r["throughput"]) > 0 and 0 < float(r["p50_ms"]) <= float(r["p99_ms"]) for r in rows)
    assert {r["stable"] for r in rows} <= {"True", "False"}
    assert (out / "perf-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "perf-cpu.json").read_text())
    best = max(rows, key=lambda r: float(r["throughput"]))
    assert summary["knee"]["throughput"] == float(best["throughput"]) and "knee (p99 <= 5000 ms)" in printed
    assert summary["capacity"]["machines"] == 1


def test_perf_measures_a_deployed_fleet_as_it_runs_without_building_or_serving(
    tmp_path, triton, capsys, monkeypatch
) -> None:
    """`make perf URL=`: the fleet the test started is measured with its own layout, instances and target, read from
    its Triton; nothing is prepared and no server is started (either would fail the run here)."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("make perf URL= built or served something")

    monkeypatch.setattr(perf, "prepare", refused)
    monkeypatch.setattr(perf, "TritonServer", refused)
    out = tmp_path / "results"
    argv = ["--url", triton.http_url, "--grpc-url", triton.grpc_url, "--host-type", "inf2.24xlarge"]
    assert perf.main([*argv, "--concurrency", "1,2", "--slo-ms", "60000", "--out", str(out), "--print-summary"]) == 0
    printed = capsys.readouterr().out
    summary = PerfSummary.read(out / "perf-cpu.json")
    assert PerfSummary.model_validate_json(printed.splitlines()[-1]) == summary, "the Job's last log line"
    assert f"the fleet at {triton.http_url} as deployed (cpu target, {triton.layout.name} layout" in printed
    assert (summary.fleet_url, summary.target, summary.host_type) == (triton.http_url, "cpu", "inf2.24xlarge")
    assert summary.host_type_source == "flag" and summary.model.startswith("deployed blip_vqa (")
    assert [(p.layout, p.instances, p.concurrency) for p in summary.points] == [
        (triton.layout.name, 1, 1),
        (triton.layout.name, 1, 2),
    ]
    assert all(p.throughput > 0 and 0 < p.p50_ms <= p.p99_ms for p in summary.points)
    # No overlay runs the cpu target; as a neuron fleet's run it is still of the wrong host type: nothing written.
    overlays = tmp_path / "overlays"
    (overlays / "neuron-inf2-xlarge-autoscaling").mkdir(parents=True)
    assert main_capacity(["--perf", str(out / "perf-cpu.json"), "--overlays", str(overlays)]) == 2
    as_neuron = tmp_path / "perf-neuron.json"
    summary.model_copy(update={"target": "neuron"}).write(as_neuron)
    assert main_capacity(["--perf", str(as_neuron), "--overlays", str(overlays)]) == 2
    err = capsys.readouterr().err
    assert "measured host type inf2.24xlarge, but overlays/neuron-inf2-xlarge runs inf2.xlarge" in err
    assert not list(overlays.rglob("capacity.yaml"))


def test_perf_refuses_a_url_where_no_fleet_answers(tmp_path, capsys) -> None:
    closed = "127.0.0.1:9"
    assert perf.main(["--url", closed, "--host-type", "local", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: the fleet at {closed}")
    assert not list(tmp_path.iterdir()), "nothing written"


def test_a_point_whose_windows_never_agree_is_measured_and_flagged_unstable(tmp_path, triton) -> None:
    # --stability 0 asks perf_analyzer for three windows with identical latency and throughput: never met, so the
    # point takes both retries and ends measured with the check off.
    work = tmp_path / "perf"
    work.mkdir()
    data_path = work / "input.json"
    data_path.write_text(json.dumps(perf.input_data([perf.SAMPLE.read_bytes()], perf.BEHAVIOR_QUESTIONS)))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(perf.library_directory(work))
    args = argparse.Namespace(requests_per_window=4, stability=0, max_trials=3, point_timeout_s=120, scores_only=True)
    figures = perf.run_point(triton.grpc_url, data_path, 1, args, env, work)
    assert figures["stable"] is False
    assert figures["throughput"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_bench_measures_every_path_and_writes_its_json(tmp_path, capsys, tiny_build) -> None:
    # A local checkpoint directory, as a user benchmarks their own fine-tuned model (not a random-* name).
    checkpoint = shutil.copytree(tiny_build.checkpoint, tmp_path / "my-finetuned-blip")
    out = tmp_path / "bench.json"
    argv = ["--model", str(checkpoint), "--workspace", str(tmp_path / "ws"), "--out", str(out)]
    assert (
        bench.main(
            [
                *argv,
                "--frames",
                "3",
                "--naive-frames",
                "1",
                "--seconds",
                "2",
                "--concurrency",
                "1,2",
                "--neighbour-frames",
                "2",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    for path in ("floor", "served_c1", "served_best", "naive"):
        assert report[path]["frames"] >= 1 and report[path]["fps"] > 0 and report[path]["p50_ms"] > 0, path
    assert [level["concurrency"] for level in report["served_levels"]] == [1, 2]
    assert report["limit"]["matmul_gflops"] > 0 and report["limit"]["gmacs_per_frame"] > 0
    assert {p["name"] for p in report["memory"]["processes"]} >= {
        "tritonserver",
        "stub image_encoder",
        "stub text_encoder",
        "stub text_decoder",
    }
    assert set(report["decode_ms"]["yes/no answer (2 steps)"]) == {"fixed", "bucketed", "exact"}
    assert set(report["layouts"]) == {"ensemble", "colocated"}
    colocated = report["layouts"]["colocated"]
    assert [p["name"] for p in colocated["memory"]["processes"]] == ["tritonserver", "stub blip_vqa"]
    assert colocated["served_best"]["fps"] > 0 and colocated["ratios"]["rss_over_fp32_weights"] > 0
    # One process owns the cores in the colocated layout: the other OpenMP wait policy is measured too.
    assert list(report["omp_variants"]) == ["colocated OMP ACTIVE", "colocated OMP PASSIVE"]
    assert colocated["openmp_wait"] == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}
    active = report["omp_variants"]["colocated OMP ACTIVE"]
    for result in (*report["layouts"].values(), active):
        assert result["beside_busy_core"]["frames"] == 2 and result["beside_busy_core"]["p50_ms"] > 0
        assert result["idle_cpu_percent"] >= 0
    if len(os.sched_getaffinity(0)) >= 2:  # a team of one thread has no worker to spin
        assert active["idle_cpu_percent"] > 50 > colocated["idle_cpu_percent"], "ACTIVE workers spin while idle"
    assert "served best fps / floor fps" in capsys.readouterr().out


def test_host_section_measures_cpu_by_process_and_requests_per_execute(tmp_path, capsys) -> None:
    """`make bench-host` end to end, short: random-host served colocated, a camera frame, exact and fast resize."""
    out = tmp_path / "host.json"
    argv = ["--workspace", str(tmp_path / "ws"), "--out", str(out), "--layouts", "colocated", "--sizes", "640x360"]
    argv += ["--concurrency", "4", "--fast-concurrency", "4", "--seconds", "2", "--in-process-frames", "2"]
    assert host.main(argv) == 0
    report = json.loads(out.read_text())
    (point,) = report["served"]["colocated"]["640x360"]
    assert point["fps"] > 0 and point["cpu_ms_per_frame"] > 0 and point["load_generator_cpu_ms_per_frame"] > 0
    assert set(point["cpu_ms_by_process"]) == {"tritonserver", "blip_vqa"}
    assert point["requests_per_execute"]["blip_vqa"] >= 1
    (fast,) = report["served_fast_resize"]["colocated"]["640x360"]
    assert fast["fps"] > 0
    stages = report["in_process"]["640x360"]["batch8"]
    assert {"decode", "resize", "tokenize", "image_encoder", "text_encoder", "text_decoder"} == set(stages)
    agreement = report["fast_resize_agreement"]
    assert 0 < agreement["agreement"] <= 1 and "frame_1920x1080.jpg" in agreement["images"]
    assert "CPU-ms/frame" in capsys.readouterr().out


def test_bench_pixels_measures_every_variant_through_the_real_api_tier(tmp_path, capsys) -> None:
    out = tmp_path / "pixels.json"
    args = ["--model", "random-tiny", "--workspace", str(tmp_path / "ws"), "--out", str(out)]
    assert (
        pixels.main([*args, "--concurrency", "2", "--seconds", "2", "--rounds", "2", "--in-process-frames", "2"]) == 0
    )
    report = json.loads(out.read_text())
    assert list(report["forms"]) == ["before", "image", "pixels"]
    assert [(v["send"], v["malloc_trim"], v["max_queue_delay_us"]) for v in report["forms"].values()] == [
        ("image", "execute", 0),
        ("image", "always", 4000),
        ("pixels", "always", 4000),
    ]
    for variant in report["forms"].values():
        for size in ("1920x1080", "640x360"):
            point = variant[size]
            assert point["frames"] > 0 and point["answered"] > 0 and point["failed"] == 0, point
            assert point["fleet_cpu_ms_per_frame"] > 0 and point["api_cpu_ms_per_frame"] > 0
            assert point["requests_per_execute"]["blip_vqa"] >= 1
    assert report["forms"]["pixels"]["640x360"]["wire_bytes_per_frame"] == report["wire_bytes_per_frame"]["pixels"]
    paced, free = report["forms"]["pixels"]["640x360_at_the_1080p_rate"], report["forms"]["pixels"]["1920x1080"]
    assert paced["answered"] > 0 and paced["fps"] <= free["fps"] * 1.2 + 1, "paced to the 1080p point's rate"
    assert report["fleet_intra_op_threads"] == 1
    # The points took turns: two windows each, and the 1080p/360p ratio of each window beside the sums'.
    assert report["windows_per_point"] == 2 and all(v["640x360"]["windows"] == 2 for v in report["forms"].values())
    assert len(report["forms"]["pixels"]["fleet_1080p_over_360p_by_window"]) == 2
    assert len(report["forms"]["pixels"]["fleet_1080p_over_360p_at_equal_load_by_window"]) == 2
    assert set(report["goals"]) == {
        "fleet_cpu_ms_1080p_at_most_10",
        "fleet_1080p_over_360p_at_most_1.2",
        "fleet_1080p_over_360p_at_equal_load",
        "total_not_above_before",
        "inf2_ceiling_before_after_1080p",
    }
    assert "goals:" in capsys.readouterr().out
