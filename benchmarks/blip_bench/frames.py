"""What every benchmark sends and where it writes: one camera frame, the behaviour questions, the results folder.

The benchmarks run from a checkout (``make bench``, ``make perf``, ``make soak``, ``make gpu-check``): paths are the
checkout's. The serving packages never look for a checkout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from blip_api.settings import DEFAULT_BEHAVIORS

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
# The sample camera frame (a cat photo, 640x480 PNG) every served and in-process figure is measured on.
SAMPLE = ROOT / "client" / "samples" / "chelsea.png"
# The workplace's real fixed-camera footage beside the clone (never committed), where it exists.
SHARED_CLIPS = ROOT.parent / "shared" / "clips"
# Where `make bench` saves random-base (blip-vqa-base's architecture, random weights): the offline benches' default.
SAVED_RANDOM_BASE = ROOT / ".bench" / "artifacts" / "checkpoints" / "random-base"
# The questions the API tier asks of a frame by default: its first three behaviours, scores only unless a
# benchmark says otherwise.
BEHAVIOR_QUESTIONS: tuple[str, ...] = tuple(DEFAULT_BEHAVIORS.values())[:3]


def write_report(report: dict[str, Any], out: Path) -> None:
    """A benchmark's JSON, stamped with its time (UTC), where the results go; the path is printed."""
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
