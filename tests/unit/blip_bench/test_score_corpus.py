"""blip_bench.score_corpus: the labelled corpus and its judgement, and the default event settings against it."""

from __future__ import annotations

import numpy as np

from blip_bench.score_corpus import Track, events_of, judge
from blip_events.settings import EventSettings, Thresholds


def test_a_hand_made_track_gives_one_event_with_its_times() -> None:
    scores = np.array([0.1] * 20 + [0.9] * 40 + [0.1] * 100)  # 2 frames/s: the behaviour from 10 s to 30 s
    found, notifications = events_of(Track(scores, [(10.0, 30.0)]), Thresholds(enter=0.5, exit=0.35), EventSettings())
    assert notifications == 2 and len(found) == 1
    start, end = found[0]
    assert 10.0 < start <= 11.5 and 30.0 <= end <= 31.0, found  # starts on the third frame, ends where it fell


def test_the_default_settings_meet_the_alert_quality_goals_on_the_corpus() -> None:
    figures = judge(cameras=25, seed=11)
    assert figures["episodes"] > 100
    assert figures["recall"] >= 0.95 and figures["precision"] >= 0.9, figures
    assert figures["fewer_notifications"] >= 10, figures
