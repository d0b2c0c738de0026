"""blip_events.machine: start on a smoothed run, end after the cutoff below exit, reopen inside the cooldown."""

from __future__ import annotations

from blip_events.machine import BehaviorState, Transition, observe
from blip_events.settings import EventSettings, Thresholds

TH = Thresholds(enter=0.5, exit=0.35)
EV = EventSettings(smoothing=3, min_frames=2, cutoff_s=30.0, cooldown_s=60.0)


def run(frames: list[tuple[float, float | None]], state: BehaviorState | None = None, ev: EventSettings = EV):
    state = state or BehaviorState()
    seen = []
    for at, score in frames:
        state, transition = observe(state, score, at, TH, ev)
        if transition is not None:
            seen.append((at, transition))
    return state, seen


def test_one_noisy_frame_starts_nothing() -> None:
    _, seen = run([(0, 0.1), (1, 0.1), (2, 0.95), (3, 0.1), (4, 0.1)])
    assert seen == []


def test_a_run_starts_once_the_median_reaches_enter_on_min_frames_in_a_row() -> None:
    state, seen = run([(0, 0.1), (1, 0.9), (2, 0.9), (3, 0.9)])
    # medians: 0.1, 0.5 (0.1, 0.9 -> 0.5 reaches 0.5), 0.9 -> the second frame at or over enter starts it
    assert seen == [(2, Transition.STARTED)] and state.active


def test_the_enter_threshold_is_reached_by_an_equal_score() -> None:
    _, seen = run([(0, 0.5), (1, 0.5)])
    assert seen == [(1, Transition.STARTED)]


def test_an_event_ends_after_cutoff_s_below_exit_at_the_first_frame_below_it() -> None:
    state, seen = run([(0, 0.9), (1, 0.9), (2, 0.1), (3, 0.1), (10, None), (32, None), (33, None)])
    # smoothed falls below 0.35 at t=3 (0.9, 0.1, 0.1); 30 s later the event ends, on a gated frame
    assert seen == [(1, Transition.STARTED), (33, Transition.ENDED)]
    assert not state.active and state.below_since == 3 and state.last_event_id is None  # the id is the caller's


def test_a_score_back_over_exit_keeps_the_event_open() -> None:
    _, seen = run([(0, 0.9), (1, 0.9), (2, 0.1), (3, 0.1), (20, 0.4), (21, 0.4), (40, 0.4), (60, None)])
    assert seen == [(1, Transition.STARTED)], "0.4 is between exit and enter: still active, the cutoff restarts"


def test_exactly_cutoff_s_below_ends_it() -> None:
    _, seen = run([(0, 0.9), (1, 0.9), (2, 0.1), (3, 0.1), (32.999, None), (33, None)])
    assert seen[-1] == (33, Transition.ENDED)


def test_a_restart_inside_the_cooldown_reopens_the_last_event() -> None:
    state, seen = run([(0, 0.9), (1, 0.9), (2, 0.1), (3, 0.1), (33, None)])
    state.last_event_id = "event-1"  # what the service records when the event ends
    state, seen = run([(40, 0.9), (41, 0.9), (42, 0.9)], state)
    # medians 0.1, 0.9, 0.9 (the lull's scores are still in the window): the second at enter reopens it
    assert seen == [(42, Transition.REOPENED)] and state.event_id == "event-1", "42 - 1 < 60 s cooldown"
    state, _ = run([(42.5, 0.1), (43, 0.1), (44, 0.1), (74, None)], state)
    state.last_event_id = "event-1"
    _, seen = run([(100, 0.9), (101, 0.9), (102, 0.9)], state)
    assert seen == [(102, Transition.STARTED)], "a start 101 s after the last notified one is a new event"


def test_gated_frames_advance_time_only() -> None:
    state, seen = run([(0, 0.9), (1, None), (2, None)])
    assert seen == [] and state.recent == [0.9] and state.streak == 1


def test_a_frame_leaves_the_state_it_was_given_as_it_was() -> None:
    # observe returns a new state and leaves its input alone: a copy that shared ``recent`` with its input and
    # changed it in place would rewrite the state a caller still holds.
    before, _ = run([(0, 0.9), (1, 0.9)])
    kept = before.model_dump()
    after, _ = run([(2, 0.1), (3, 0.1), (40, None)], before)
    assert before.model_dump() == kept and after.recent == [0.9, 0.1, 0.1] and not after.active
