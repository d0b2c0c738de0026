"""A labelled score-sequence corpus for the behaviour state machine, and its event-level judgement.

Scores are synthetic: the checkpoints here are random, so real behaviour scores cannot be had. Each camera-hour at
2 frames/s holds behaviour episodes (10 to 120 s, one every few minutes) whose scores sit high with dropouts (the dog
pauses, turns away), and quiet stretches whose scores sit low with near-threshold noise, noisy single frames and
long borderline stretches. Against those labels it counts event recall and precision, and notifications per
camera-hour against today's per-frame alert (one per frame at or over the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blip_contract import reaches
from blip_events.machine import BehaviorState, Transition, observe
from blip_events.settings import EventSettings, Thresholds

FPS = 2.0


@dataclass(frozen=True)
class Track:
    """One camera-hour of one behaviour: a score per frame, and the true episodes (start, end) in seconds."""

    scores: np.ndarray
    episodes: list[tuple[float, float]]


def make_track(rng: np.random.Generator, hours: float = 1.0) -> Track:
    frames = int(hours * 3600 * FPS)
    times = np.arange(frames) / FPS
    scores = np.clip(rng.normal(0.18, 0.1, frames), 0.0, 1.0)  # quiet: low, noisy
    # Borderline stretches: 20-60 s hovering just under the threshold (a dog that might be barking).
    for _ in range(rng.poisson(4 * hours)):
        start = rng.uniform(0, frames / FPS)
        span = (times >= start) & (times < start + rng.uniform(20, 60))
        scores[span] = np.clip(rng.normal(0.42, 0.07, int(span.sum())), 0, 1)
    episodes = []
    at = rng.exponential(240.0)
    while at < frames / FPS - 10:
        length = rng.uniform(10, 120)
        span = (times >= at) & (times < at + length)
        burst = np.clip(rng.normal(0.82, 0.09, int(span.sum())), 0, 1)
        dropped = rng.random(burst.size) < 0.2  # pauses and look-aways inside the behaviour
        burst[dropped] = np.clip(rng.normal(0.25, 0.12, int(dropped.sum())), 0, 1)
        scores[span] = burst
        episodes.append((float(at), float(min(at + length, frames / FPS))))
        at += length + 30 + rng.exponential(300.0)
    # Noisy frames: a single frame that looks like the behaviour.
    spikes = rng.random(frames) < 0.003
    scores[spikes] = rng.uniform(0.6, 1.0, int(spikes.sum()))
    return Track(scores, episodes)


def events_of(track: Track, thresholds: Thresholds, events: EventSettings) -> tuple[list[tuple[float, float]], int]:
    """The machine's events over a track as (start, end) seconds, and its notifications (started + ended)."""
    state, found, notifications, start = BehaviorState(), [], 0, None
    for index, score in enumerate(track.scores):
        at = index / FPS
        state, transition = observe(state, float(score), at, thresholds, events)
        if transition is Transition.STARTED:
            notifications += 1
            start = at
            state.event_id = f"e{len(found)}"
        elif transition is Transition.REOPENED and found:
            start = found.pop()[0]  # the merged event goes on
        elif transition is Transition.ENDED and start is not None:
            notifications += 1
            found.append((start, state.below_since or at))
            start = None
    if start is not None:
        found.append((start, len(track.scores) / FPS))
    return found, notifications


def _overlaps(a: tuple[float, float], b: tuple[float, float], slack: float) -> bool:
    return a[0] <= b[1] + slack and b[0] <= a[1] + slack


def judge(
    cameras: int = 200,
    hours: float = 1.0,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    events: EventSettings | None = None,
) -> dict[str, float]:
    """Event recall and precision, notifications and per-frame alerts per camera-hour, over ``cameras`` tracks."""
    thresholds = thresholds or Thresholds(enter=0.5, exit=0.35)
    events = events or EventSettings()
    rng = np.random.default_rng(seed)
    episodes = matched = found_total = true_events = notifications = per_frame = 0
    for _ in range(cameras):
        track = make_track(rng, hours)
        found, sent = events_of(track, thresholds, events)
        notifications += sent
        per_frame += int(sum(reaches(float(s), thresholds.enter) for s in track.scores))
        episodes += len(track.episodes)
        matched += sum(any(_overlaps(e, f, 2.0) for f in found) for e in track.episodes)
        found_total += len(found)
        true_events += sum(any(_overlaps(f, e, 2.0) for e in track.episodes) for f in found)
    hours_total = cameras * hours
    return {
        "camera_hours": hours_total,
        "episodes": episodes,
        "events": found_total,
        "recall": round(matched / max(episodes, 1), 4),
        "precision": round(true_events / max(found_total, 1), 4),
        "notifications_per_camera_hour": round(notifications / hours_total, 2),
        "per_frame_alerts_per_camera_hour": round(per_frame / hours_total, 2),
        "fewer_notifications": round(per_frame / max(notifications, 1), 1),
    }
