"""perf_analyzer (tritonclient 2.50's binary) for one point: its input JSON, its libraries, and a run that retries
windows that never agree."""

from __future__ import annotations

import argparse
import base64
import csv
import shutil
import subprocess
import sys
from pathlib import Path

from blip_serving.spec import IMAGE, PUBLIC_MODEL, QUESTIONS, SCORES_ONLY

# perf_analyzer 2.50 links these sonames; the nvidia-pytriton wheel carries both under hashed names.
_NEEDED_LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
# perf_analyzer accepts any window whose max/min ratio is within this percentage: in effect, no stability check.
UNCHECKED_STABILITY = 100_000


def bytes_element(data: bytes) -> bytes:
    """One BYTES element as Triton serializes it: a 4-byte little-endian length, then the bytes."""
    return len(data).to_bytes(4, "little") + data


def input_data(images: list[bytes], questions: tuple[str, ...]) -> dict:
    """perf_analyzer's JSON: BYTES tensors as base64 of their serialized elements, with explicit shapes (without
    the batch dimension, which perf_analyzer adds); one entry per image, which perf_analyzer's requests cycle through."""
    encoded_questions = b"".join(bytes_element(q.encode()) for q in questions)
    return {
        "data": [
            {
                IMAGE: {"b64": base64.b64encode(bytes_element(image)).decode(), "shape": [1]},
                QUESTIONS: {"b64": base64.b64encode(encoded_questions).decode(), "shape": [len(questions)]},
            }
            for image in images
        ]
    }


def perf_analyzer_binary() -> Path:
    binary = Path(sys.executable).parent / "perf_analyzer"
    if not binary.is_file():
        found = shutil.which("perf_analyzer")
        if not found:
            raise SystemExit("perf_analyzer not found: it comes with tritonclient==2.50.0 (make install)")
        binary = Path(found)
    return binary


def library_directory(root: Path) -> Path | None:
    """A directory with the sonames perf_analyzer needs, linked to the copies in the nvidia-pytriton wheel; None
    where that wheel is not installed (a GPU or Neuron fleet image, whose own libraries are on the loader's path)."""
    try:
        import pytriton
    except ImportError:
        return None

    wheel_libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    directory = root / "perf_analyzer_libs"
    directory.mkdir(parents=True, exist_ok=True)
    for soname, pattern in _NEEDED_LIBRARIES.items():
        link = directory / soname
        if link.exists():
            continue
        candidates = sorted(wheel_libs.glob(pattern))
        if not candidates:
            raise SystemExit(f"{soname} for perf_analyzer: nothing like {pattern} in {wheel_libs}")
        link.unlink(missing_ok=True)
        link.symlink_to(candidates[0])
    return directory


# perf_analyzer accepts any window whose max/min ratio is within this percentage: in effect, no stability check.


def _unstable(result: subprocess.CompletedProcess) -> bool:
    return result.returncode != 0 and "stable measurement" in result.stdout + result.stderr


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _set_option(command: list[str], name: str, value: object) -> None:
    command[command.index(name) + 1] = str(value)


def run_point(
    url: str, data_path: Path, concurrency: int, args: argparse.Namespace, env: dict[str, str], work: Path
) -> dict[str, float]:
    csv_path = work / f"point-{concurrency}.csv"
    command = [
        str(perf_analyzer_binary()),
        "-m",
        PUBLIC_MODEL,
        "-u",
        url,
        # gRPC: perf_analyzer 2.50 sends --request-parameter over gRPC only.
        "-i",
        "grpc",
        "--input-data",
        str(data_path),
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(max(args.requests_per_window, 2 * concurrency)),
        "--stability-percentage",
        str(args.stability),
        "--max-trials",
        str(args.max_trials),
        "-f",
        str(csv_path),
    ]
    if args.scores_only:
        command += ["--request-parameter", f"{SCORES_ONLY}:true:bool"]

    def measure() -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.point_timeout_s)

    result = measure()
    stable = True
    if _unstable(result):
        # A busy machine can keep perf_analyzer's windows from agreeing: once more with windows twice as long.
        _set_option(command, "--measurement-request-count", 2 * int(_option(command, "--measurement-request-count")))
        result = measure()
    if _unstable(result):
        # Still not: measure with the check off and flag the point, rather than lose the whole sweep to one noisy point.
        stable = False
        _set_option(command, "--stability-percentage", UNCHECKED_STABILITY)
        result = measure()
    if result.returncode != 0 or not csv_path.is_file():
        raise RuntimeError(
            f"perf_analyzer failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    with csv_path.open() as handle:
        row = next(csv.DictReader(handle))
    return {
        "throughput": float(row["Inferences/Second"]),
        **{f"{p}_ms": float(row[f"{p} latency"]) / 1000 for p in ("p50", "p90", "p95", "p99")},
        "stable": stable,
    }
