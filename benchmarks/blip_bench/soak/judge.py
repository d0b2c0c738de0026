"""The soak's verdict: no valid request failed, every bad one got its status, no process leaked, both kills healed."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from blip_bench.machine import machine
from blip_bench.soak.config import (
    CHAOS_UNFINISHED,
    FLEETS,
    HEAL_TARGET_S,
    LOAD_GENERATOR,
    LOAD_STOPPED,
    READY_EVENTS,
    RSS_GROWTH_LIMIT,
    Outcome,
    SoakConfig,
)
from blip_bench.timing import percentile


def incarnations(
    config: SoakConfig, samples: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per process (role and pid): growth of RSS, descriptors and threads over its judged window."""
    warmup = config.warmup_s
    by_process: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for sample in samples:
        if sample["role"] != LOAD_GENERATOR:  # it keeps every response by design; sampled for its CPU only
            by_process.setdefault((sample["role"], sample["pid"]), []).append(sample)
    result = []
    # A process started mid-run (a healed stub, a restarted fleet) warms up from when its fleet answered again.
    ready = [(e["fleet"], e["t"]) for e in events if e["event"] in READY_EVENTS]
    for (role, pid), series in sorted(by_process.items(), key=lambda item: (item[0][0], item[1][0]["t"])):
        born = series[0]["t"]
        answering = min((t for fleet, t in ready if role.startswith(f"{fleet}/") and t >= born), default=born)
        start = warmup if born < warmup else answering + warmup
        judged = [s for s in series if s["t"] >= start]
        entry: dict[str, Any] = {"role": role, "pid": pid, "from_s": born, "to_s": series[-1]["t"]}
        if len(judged) < 10 or judged[-1]["t"] - judged[0]["t"] < max(10.0, 0.2 * config.seconds):
            entry["judged"] = False  # lived too briefly after its warm-up to say anything
            result.append(entry)
            continue
        tenth = max(3, len(judged) // 10)
        head, tail = judged[:tenth], judged[-tenth:]

        def median(rows: list[dict[str, Any]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        rss0, rss1 = median(head, "rss"), median(tail, "rss")
        entry |= {
            "judged": True,
            "window_s": [judged[0]["t"], judged[-1]["t"]],
            "rss_mib": [round(rss0 / 2**20, 1), round(rss1 / 2**20, 1)],
            "rss_growth": round(rss1 / rss0 - 1, 4),
            "fds": [median(head, "fds"), median(tail, "fds")],
            "threads": [median(head, "threads"), median(tail, "threads")],
        }
        entry["rss_ok"] = entry["rss_growth"] <= RSS_GROWTH_LIMIT
        # "Keeps growing" is a trend, not a step: a pool that grew once (all traffic on one fleet while the
        # other was down) and stays is fine; a leak shows the last third above everything in the middle one.
        third = len(judged) // 3
        middle, last = judged[third : 2 * third], judged[2 * third :]
        for key, slack in (("fds", 2), ("threads", 2)):
            rise = median(last, key) - max(r[key] for r in middle)
            entry[f"{key}_trend"] = rise
            entry[f"{key}_ok"] = rise <= slack
        result.append(entry)
    return result


def verdict(
    config: SoakConfig,
    outcomes: list[Outcome],
    samples: list[dict[str, Any]],
    events: list[dict[str, Any]],
    heals: dict[str, Any],
) -> dict[str, Any]:
    valid = [o for o in outcomes if o.valid]
    latencies = sorted(o.ms for o in valid if o.status == 200)
    by_kind: dict[str, dict[str, int]] = {}
    for o in outcomes:
        counts = by_kind.setdefault(o.kind, {})
        counts[str(o.status)] = counts.get(str(o.status), 0) + 1
    wrong = [asdict(o) for o in outcomes if not o.ok]
    processes = incarnations(config, samples, events)
    judged = [p for p in processes if p["judged"]]
    checks = {
        "no valid request failed": not [o for o in valid if not o.ok],
        "every bad request got its documented status": not [o for o in outcomes if not o.valid and not o.ok],
        f"no RSS grew more than {RSS_GROWTH_LIMIT:.0%}": all(p["rss_ok"] for p in judged),
        "no descriptor count kept growing": all(p["fds_ok"] for p in judged),
        "no thread count kept growing": all(p["threads_ok"] for p in judged),
        f"a killed stub healed within {HEAL_TARGET_S:.0f} s": heals.get("stub_kill_to_answer_s", 1e9) <= HEAL_TARGET_S,
        "blip-client probe passed after the heal": heals.get("probe_exit_after_heal") == 0,
        "both kills happened and healed": "fleet_kill_to_router_healthy_s" in heals
        and heals.get("stub_kill_to_router_healthy_s") is not None
        and heals.get("fleet_kill_to_router_healthy_s") is not None,
        "every process was judged": bool(judged),
        "every disturbance ran to its end": not any(e["event"] == CHAOS_UNFINISHED for e in events),
    }

    def p(percent: float) -> float | None:
        return round(percentile(latencies, percent), 1) if latencies else None

    return {
        "passed": all(checks.values()),
        "checks": checks,
        "config": asdict(config) | {"warmup_s": config.warmup_s},
        # The load's actual length: past config.seconds where it went on for the chaos to end.
        "ran_s": next((e["t"] for e in events if e["event"] == LOAD_STOPPED), config.seconds),
        "machine": machine(),
        "requests": len(outcomes),
        "valid_requests": len(valid),
        "valid_failed": sum(not o.ok for o in valid),
        "bad_requests": len(outcomes) - len(valid),
        "bad_with_wrong_status": sum(not o.ok for o in outcomes if not o.valid),
        "valid_latency_ms": {
            "p50": p(50),
            "p99": p(99),
            "p999": p(99.9),
            "max": latencies[-1] if latencies else None,
        },
        "by_kind_and_status": by_kind,
        "served_by": {b: sum(o.backend == b for o in valid) for b in FLEETS},
        "heals": heals,
        "events": events,
        "processes": processes,
        "unexpected": wrong[:50],
        "outcomes": [[o.t, o.kind, o.status, o.ms, o.backend, o.case, o.ok] for o in outcomes],
        "samples": samples,
    }
