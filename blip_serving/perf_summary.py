"""``benchmarks/results/perf-<target>.json``: what ``make perf`` measured, written by ``blip_bench.perf`` and read by
``make capacity`` / ``make cost`` (``blip_serving.capacity``). One record, one writer, one reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from blip_contract.records import load_file


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: str
    cores: int
    memory_gib: float
    python: str
    torch: str


class PerfPoint(BaseModel):
    """One perf_analyzer measurement: a layout and instance count at one concurrency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: int
    concurrency: int
    throughput: float = Field(description="Frames (inference requests) per second.")
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    layout: str = "ensemble"
    stable: bool = Field(
        True,
        description="False: perf_analyzer's windows never agreed within --stability-percentage, even twice as "
        "long; the figures are from windows it was told to accept, and the knee skips the point while any stable "
        "one exists.",
    )


class PerfSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    machine: Machine
    model: str = Field(description="The checkpoint measured (random-base: blip-vqa-base's architecture).")
    target: str
    mode: str = Field(description="scores only, or answers.")
    questions_per_frame: int = Field(3, description="Questions asked of each frame (older summaries lack it: 3).")
    frames: list[str] = Field(default_factory=list, description="The camera frames perf_analyzer cycled through.")
    slo_ms: float
    knee: PerfPoint | None = Field(description="The highest throughput whose p99 stays within slo_ms.")
    capacity: dict[str, Any] = Field(description="Instances and machines for the --rate asked for.")
    points: list[PerfPoint]
    seconds: float = Field(description="Wall time of the sweep.")
    host_type: str | None = Field(
        None,
        description="The host type measured (the flag, EC2 instance metadata, else local); make capacity writes an "
        "overlay's target only from a summary of that overlay's host type, and refuses one without it (older).",
    )
    host_type_source: Literal["flag", "ec2-metadata", "default"] | None = None
    fleet_url: str | None = Field(
        None, description="The deployed fleet measured (make perf URL=); None: a server the sweep built and started."
    )

    @classmethod
    def read(cls, path: Path) -> PerfSummary:
        """The file whole; an unknown key or a bad value is ``ConfigFileError`` in one line naming the file."""
        return load_file(cls, path)

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")
