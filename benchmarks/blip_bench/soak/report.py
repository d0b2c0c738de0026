"""The soak's output: a chart, a summary for the terminal, and the JSON report with every response and sample."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

from blip_bench.soak.config import LOAD_GENERATOR
from blip_bench.timing import percentile


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rss_axis, cpu_axis, latency_axis, rate_axis) = plt.subplots(4, 1, figsize=(12, 14), sharex=True)
    roles = sorted({s["role"] for s in report["samples"]})
    colors = {role: plt.cm.tab20(i % 20) for i, role in enumerate(roles)}
    for role in roles:
        for pid in sorted({s["pid"] for s in report["samples"] if s["role"] == role}):
            series = [s for s in report["samples"] if s["role"] == role and s["pid"] == pid]
            times = [s["t"] for s in series]
            if role != LOAD_GENERATOR:
                rss_axis.plot(times, [s["rss"] / 2**20 for s in series], color=colors[role], lw=1.2)
            # CPU in cores, over 10-sample steps so that one-second jitter does not hide the level.
            step = 10
            cores = [
                (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"])
                for a, b in zip(series[:-step:step], series[step::step], strict=False)
                if b["t"] > a["t"]
            ]
            cpu_axis.plot(times[step::step][: len(cores)], cores, color=colors[role], lw=1.2)
        rss_axis.plot([], [], color=colors[role], label=role)
    rss_axis.set_ylabel("RSS (MiB)")
    rss_axis.legend(fontsize=7, ncol=3, loc="upper left")
    cpu_axis.set_ylabel("CPU (cores)")
    seconds = report["ran_s"]
    window = max(5.0, seconds / 60)
    edges = [i * window for i in range(int(seconds / window))]
    valid = [o for o in report["outcomes"] if o[1] in ("behaviors", "questions")]
    p50, p99, rate_valid, rate_bad = [], [], [], []
    for start in edges:
        inside = [o[3] for o in valid if start <= o[0] < start + window and o[2] == 200]
        p50.append(percentile(inside, 50))
        p99.append(percentile(inside, 99))
        rate_valid.append(sum(start <= o[0] < start + window for o in valid) / window)
        rate_bad.append(
            sum(start <= o[0] < start + window for o in report["outcomes"] if o[1] not in ("behaviors", "questions"))
            / window
        )
    centers = [e + window / 2 for e in edges]
    latency_axis.plot(centers, p50, label="valid p50")
    latency_axis.plot(centers, p99, label="valid p99")
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.legend(fontsize=8)
    rate_axis.plot(centers, rate_valid, label="valid req/s")
    rate_axis.plot(centers, rate_bad, label="bad req/s")
    failed = [o[0] for o in report["outcomes"] if o[1] in ("behaviors", "questions") and o[2] != 200]
    if failed:
        rate_axis.plot(failed, [0] * len(failed), "rx", label="failed valid request")
    rate_axis.set_ylabel("requests/s")
    rate_axis.set_xlabel("seconds")
    rate_axis.legend(fontsize=8)
    for axis in (rss_axis, cpu_axis, latency_axis, rate_axis):
        axis.axvspan(0, report["config"]["warmup_s"], color="0.93")
        for event in report["events"]:
            if "killed" in event["event"]:
                axis.axvline(event["t"], color="red", ls="--", lw=1)
    rss_axis.set_title(
        f"soak {seconds:.0f} s: {report['requests']} requests, {report['valid_failed']} valid failed, "
        f"passed={report['passed']} (red: kills; grey: warm-up)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"soak: {report['requests']} requests in {report['ran_s']:.0f} s "
        f"({report['valid_requests']} valid, {report['bad_requests']} bad); "
        f"valid failed {report['valid_failed']}, bad with a wrong status {report['bad_with_wrong_status']}",
        "valid latency " + ", ".join(f"{k} {v} ms" for k, v in report["valid_latency_ms"].items()) + "; "
        f"served by {report['served_by']}",
        f"heals: {report['heals']}",
        "processes (RSS MiB after warm-up -> end, growth; fds and threads, with the last third's rise over the middle):",
    ]
    for p in report["processes"]:
        if p["judged"]:
            lines.append(
                f"  {p['role']:<32} {p['rss_mib'][0]:>7.1f} -> {p['rss_mib'][1]:>7.1f} ({p['rss_growth']:+.2%})  "
                f"fds {p['fds'][0]:g}->{p['fds'][1]:g} (trend {p['fds_trend']:+g})  "
                f"threads {p['threads'][0]:g}->{p['threads'][1]:g} (trend {p['threads_trend']:+g})"
            )
        else:
            lines.append(f"  {p['role']:<32} lived {p['from_s']:.0f}-{p['to_s']:.0f} s: too short to judge")
    lines += [f"  [{'ok' if ok else 'FAILED'}] {name}" for name, ok in report["checks"].items()]
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)


OUTCOME_COLUMNS = ("t", "kind", "status", "ms", "backend", "case", "ok")
SAMPLE_COLUMNS = ("t", "role", "pid", "rss", "fds", "threads", "cpu_s")


def write(report: dict[str, Any], stem: Path) -> None:
    """``<stem>.json`` (the verdict and its figures), ``<stem>.png``, and every response and every process
    sample as gzipped CSV beside them (``<stem>.responses.csv.gz``, ``<stem>.samples.csv.gz``)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    plot(report, stem.with_suffix(".png"))
    tables = {
        "responses": (OUTCOME_COLUMNS, report["outcomes"]),
        "samples": (SAMPLE_COLUMNS, [[sample[c] for c in SAMPLE_COLUMNS] for sample in report["samples"]]),
    }
    for name, (columns, rows) in tables.items():
        # mtime=0: the same run gives the same bytes.
        path = stem.parent / f"{stem.name}.{name}.csv.gz"
        with (
            gzip.GzipFile(path, "wb", mtime=0) as raw,
            io.TextIOWrapper(raw, encoding="utf-8", newline="") as text,
        ):
            writer = csv.writer(text)
            writer.writerow(columns)
            writer.writerows(rows)
    summary_only = {key: value for key, value in report.items() if key not in ("outcomes", "samples")}
    summary_only["files"] = {name: f"{stem.name}.{name}.csv.gz" for name in tables}
    stem.with_suffix(".json").write_text(json.dumps(summary_only, indent=1) + "\n")
