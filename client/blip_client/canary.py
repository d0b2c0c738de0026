"""A canary for a new checkpoint: shadow traffic to a candidate fleet, compared on live frames before any caller
gets its answers, and promotion in steps that is refused while the candidate disagrees.

- Shadow: of the frames the ``current`` fleet answered, a ``share`` is sent again to the ``candidate`` (scores only),
  after the caller's answer is ready and in a task of its own, so the caller never waits on it; at most
  ``max_in_flight`` mirrors run at once and a frame past that is skipped, never queued. The candidate takes no
  routed traffic until promoted (its weight in ``[backends]`` is 0).
- Compared, per behaviour (a free question counts as ``question``): the answer (yes when the score is at least 0.5,
  the decoder's own reading), ``|score - candidate's score|``, and the alert flips (one side reaches the alert
  threshold, the other not: ``blip_contract.reaches``); and the two fleets' latencies on the same frames. The
  figures are Prometheus series (``blip_canary_*``) and the admin route's report.
- Promotion: each step moves the candidate's share of the routed traffic to the next of ``steps`` (the current fleet
  takes the rest); the last step is 1, where the candidate takes all and mirroring stops. A step is refused while
  fewer than ``min_frames`` were mirrored, or while any behaviour's agreement is under ``min_agreement``; the
  refusal says which. ``force`` promotes anyway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field

from blip_client.errors import BlipVqaError
from blip_client.router import Router
from blip_client.router_backend import RoutedAnswer
from blip_client.router_config import CanarySection
from blip_client.wire import FrameInput
from blip_contract import reaches
from blip_contract.records import Strict

YES_AT = 0.5  # a score at or above this decodes as "yes"
FREE_QUESTION = "question"  # the label of a question that is not a configured behaviour
LATENCIES_KEPT = 2000
log = logging.getLogger("blip_client.canary")


class BehaviorAgreement(Strict):
    frames: int
    agreement: float | None = Field(description="Share of mirrored frames with the same yes/no answer.")
    mean_abs_delta: float | None
    max_abs_delta: float | None
    alert_flips: int


class CanaryReport(Strict):
    """``GET /admin/canary``: what the candidate did on live frames, and where promotion stands."""

    candidate: str
    current: str
    mirrored: int
    skipped: int
    failed: int
    behaviors: dict[str, BehaviorAgreement]
    current_p50_ms: float | None
    candidate_p50_ms: float | None
    step: int = Field(description="Promotions done (0: shadow only).")
    candidate_share: float = Field(description="The candidate's share of routed traffic now.")
    promotable: bool
    reason: str = Field(description="Why promotion would be refused, or what the next step does.")


class CanaryRefused(Exception):
    """Promotion refused: the message says why."""


@dataclass
class _Tally:
    frames: int = 0
    agreed: int = 0
    flips: int = 0
    deltas: list[float] = field(default_factory=list)


class Canary:
    """One candidate against one current fleet, over the router that reaches both."""

    def __init__(self, config: CanarySection, router: Router, alert_threshold: float) -> None:
        for name in (config.candidate, config.current):
            if name not in router.backends:
                raise ValueError(f"canary: no backend named {name!r}; known: {sorted(router.backends)}")
        self.config, self.router, self.alert_threshold = config, router, alert_threshold
        self.current_weight = router.backends[config.current].weight or 1.0
        self.step = 0
        self.mirrored = self.skipped = self.failed = 0
        self.tallies: dict[str, _Tally] = {}
        self.latencies: dict[str, deque[float]] = {
            "current": deque(maxlen=LATENCIES_KEPT),
            "candidate": deque(maxlen=LATENCIES_KEPT),
        }
        self.tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random()
        r = router.metrics.registry
        self.frames = Counter(
            "blip_canary_frames", "Frames mirrored to the candidate, by behaviour", ["behavior"], registry=r
        )
        self.agreed = Counter(
            "blip_canary_agreed", "Mirrored frames whose yes/no answer agreed", ["behavior"], registry=r
        )
        self.flips = Counter(
            "blip_canary_alert_flips", "Mirrored frames whose alert differed", ["behavior"], registry=r
        )
        self.delta = Histogram(
            "blip_canary_score_delta",
            "|current score - candidate score| per mirrored frame and behaviour",
            ["behavior"],
            buckets=(0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )
        self.latency = Histogram(
            "blip_canary_latency_seconds",
            "Latency on the mirrored frames, by version (current, candidate)",
            ["version"],
            registry=r,
        )
        self.outcomes = Counter(
            "blip_canary_mirrors", "Mirrors by outcome (done, skipped, failed)", ["outcome"], registry=r
        )
        self.share_gauge = Gauge("blip_canary_candidate_share", "The candidate's share of routed traffic", registry=r)

    def close(self) -> None:
        """Stop mirroring and take the series out of the registry (a reload that changes ``[canary]``)."""
        for task in list(self.tasks):
            task.cancel()
        registry = self.router.metrics.registry
        for collector in (
            self.frames,
            self.agreed,
            self.flips,
            self.delta,
            self.latency,
            self.outcomes,
            self.share_gauge,
        ):
            registry.unregister(collector)

    # ---- shadow ---------------------------------------------------------------------------------------------

    @property
    def shadowing(self) -> bool:
        return self.candidate_share < 1

    @property
    def candidate_share(self) -> float:
        return self.config.steps[self.step - 1] if self.step else 0.0

    def mirror(
        self, image: FrameInput, questions: Sequence[str], labels: Sequence[str | None], answer: RoutedAnswer
    ) -> None:
        """Mirror one answered frame if it is the current fleet's and falls in the share; returns at once."""
        if not self.shadowing or answer.backend != self.config.current:
            return
        if self._random.random() >= self.config.share:
            return
        if len(self.tasks) >= self.config.max_in_flight:
            self.skipped += 1
            self.outcomes.labels("skipped").inc()
            return
        task = asyncio.create_task(self._mirror(image, list(questions), list(labels), answer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _mirror(
        self, image: FrameInput, questions: list[str], labels: list[str | None], answer: RoutedAnswer
    ) -> None:
        try:
            result = await self.router.ask_backend(self.config.candidate, image, questions, scores_only=True)
        except BlipVqaError as error:
            self.failed += 1
            self.outcomes.labels("failed").inc()
            log.warning("canary: the candidate %s failed a mirrored frame: %s", self.config.candidate, error)
            return
        self.mirrored += 1
        self.outcomes.labels("done").inc()
        self.latencies["current"].append(answer.seconds)
        self.latencies["candidate"].append(result.seconds)
        self.latency.labels("current").observe(answer.seconds)
        self.latency.labels("candidate").observe(result.seconds)
        for label, ours, theirs in zip(labels, answer.scores, result.scores, strict=True):
            name = label or FREE_QUESTION
            tally = self.tallies.setdefault(name, _Tally())
            delta = abs(ours - theirs)
            agreed = (ours >= YES_AT) == (theirs >= YES_AT)
            flipped = reaches(ours, self.alert_threshold) != reaches(theirs, self.alert_threshold)
            tally.frames += 1
            tally.agreed += int(agreed)
            tally.flips += int(flipped)
            tally.deltas.append(delta)
            self.frames.labels(name).inc()
            self.agreed.labels(name).inc(int(agreed))
            self.flips.labels(name).inc(int(flipped))
            self.delta.labels(name).observe(delta)

    # ---- report and promotion --------------------------------------------------------------------------------

    def refusal(self) -> str | None:
        """Why the next promotion would be refused; None when it may go ahead."""
        if not self.shadowing:
            return f"{self.config.candidate} already takes all the traffic"
        if self.mirrored < self.config.min_frames:
            return f"only {self.mirrored} frames mirrored to {self.config.candidate}; promotion needs {self.config.min_frames}"
        worst = min(self.tallies.items(), key=lambda item: item[1].agreed / item[1].frames)
        name, tally = worst
        agreement = tally.agreed / tally.frames
        if agreement < self.config.min_agreement:
            return (
                f"{self.config.candidate} agrees with {self.config.current} on {agreement:.1%} of {tally.frames} "
                f"mirrored frames for {name!r} ({tally.flips} alert flips), under the {self.config.min_agreement:.1%} "
                "promotion needs; force promotes anyway"
            )
        return None

    def report(self) -> CanaryReport:
        refusal = self.refusal()
        nxt = (
            f"promotion moves {self.config.candidate} to {self.config.steps[self.step]:.0%} of the traffic"
            if self.shadowing
            else ""
        )
        return CanaryReport(
            candidate=self.config.candidate,
            current=self.config.current,
            mirrored=self.mirrored,
            skipped=self.skipped,
            failed=self.failed,
            behaviors={
                name: BehaviorAgreement(
                    frames=t.frames,
                    agreement=round(t.agreed / t.frames, 4),
                    mean_abs_delta=round(statistics.fmean(t.deltas), 6),
                    max_abs_delta=round(max(t.deltas), 6),
                    alert_flips=t.flips,
                )
                for name, t in sorted(self.tallies.items())
            },
            current_p50_ms=_p50_ms(self.latencies["current"]),
            candidate_p50_ms=_p50_ms(self.latencies["candidate"]),
            step=self.step,
            candidate_share=self.candidate_share,
            promotable=refusal is None,
            reason=refusal or nxt,
        )

    def promote(self, force: bool = False) -> CanaryReport:
        """The next step; ``CanaryRefused`` with the reason unless it may go ahead or ``force``."""
        refusal = self.refusal()
        if refusal and (force is False or not self.shadowing):
            raise CanaryRefused(refusal)
        self.step += 1
        share = self.candidate_share
        self.router.set_weight(self.config.candidate, share * self.current_weight)
        self.router.set_weight(self.config.current, (1 - share) * self.current_weight)
        self.share_gauge.set(share)
        log.warning(
            "canary: %s promoted to %.0f%% of the traffic%s",
            self.config.candidate,
            share * 100,
            " (forced)" if refusal else "",
        )
        return self.report()


def _p50_ms(values: deque[float]) -> float | None:
    return round(statistics.median(values) * 1000, 2) if values else None
