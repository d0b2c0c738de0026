"""What a soak run is: its settings, its fleets and victims, what it judges by, and what one response was."""

from __future__ import annotations

from dataclasses import dataclass

from blip_bench.frames import ROOT

FLEETS = {"neuron": "colocated", "gpu": "ensemble"}
STUB_VICTIM = ("gpu", "text_decoder_0_0")
FLEET_VICTIM = "neuron"  # killed whole at fleet_kill_at; where two versions exist, switched and rolled back after
MAX_IMAGE_BYTES = 1 << 20  # the soak's API limit: oversize bodies stay cheap to send
RSS_GROWTH_LIMIT = 0.05
HEAL_TARGET_S = 15.0
READY_EVENTS = ("stub kill healed", "fleet answering again")
CHAOS_UNFINISHED = "chaos did not finish within the run"  # the event that fails a run: a disturbance was cut short
LOAD_STOPPED = "load stopped"  # the event that ends a run, at its actual length
LOAD_GENERATOR = "load generator"
EXTRA_IMAGES = ROOT.parent / "shared" / "images"  # ../shared/images, where it exists


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 600.0
    concurrency: int = 4
    seed: int = 20261126
    sample_s: float = 1.0
    restart_delay_s: float = 2.0  # a container runtime's back-off before it starts a killed container again
    request_timeout_s: float = 20.0  # the router's per-attempt limit: a request stuck on a dying stub waits this

    @property
    def overrun_s(self) -> float:
        """How long the load may go on past ``seconds`` while the chaos finishes: each heal and switch waits for
        the one before it, so on a slow machine the last one can end after the planned length. The load keeps
        running meanwhile (every disturbance is judged under load), and the run still stops by itself."""
        return max(30.0, 0.25 * self.seconds)

    @property
    def warmup_s(self) -> float:
        return min(60.0, 0.2 * self.seconds)

    @property
    def stub_kill_at(self) -> float:
        return 0.35 * self.seconds

    @property
    def fleet_kill_at(self) -> float:
        return 0.6 * self.seconds

    # Where the repository holds two model versions: the restarted fleet switches to the other one, then back.
    @property
    def switch_at(self) -> float:
        return 0.75 * self.seconds

    @property
    def rollback_at(self) -> float:
        return 0.85 * self.seconds


@dataclass
class Outcome:
    t: float
    kind: str
    case: str
    status: int
    ok: bool
    valid: bool
    ms: float
    backend: str | None
    detail: str = ""
