"""The soak's verdict on synthetic series: a leak fails it, a one-time step of a pool does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from blip_bench.soak import Soak, SoakConfig


def verdict(rss, fds, threads, born: float = 0.0, events=()) -> dict:
    soak = Soak(SoakConfig(seconds=100), Path("."), Path("."))
    soak.samples = [
        {"t": t, "role": "gpu/tritonserver", "pid": 7, "rss": rss(t), "fds": fds(t), "threads": threads(t)}
        for t in range(int(born), 100)
    ]
    soak.events = list(events)
    (entry,) = soak.incarnations()
    return entry


def flat(value):
    return lambda t: value


def test_a_steady_process_passes() -> None:
    entry = verdict(flat(100 << 20), flat(40), flat(20))
    assert entry["judged"] and entry["rss_ok"] and entry["fds_ok"] and entry["threads_ok"]


@pytest.mark.parametrize(
    ("series", "failed"),
    [
        ({"rss": lambda t: (100 << 20) + t * (200 << 10)}, "rss_ok"),  # +200 KiB/s: 16% over the window
        ({"fds": lambda t: 40 + t // 5}, "fds_ok"),  # one descriptor every 5 s, never closed
        ({"threads": lambda t: 20 + t // 4}, "threads_ok"),
    ],
)
def test_a_leak_fails(series, failed) -> None:
    entry = verdict(series.get("rss", flat(100 << 20)), series.get("fds", flat(40)), series.get("threads", flat(20)))
    assert entry["judged"] and not entry[failed]


def test_a_pool_that_grew_once_and_stays_passes() -> None:
    # All traffic on one fleet while the other was down: more connections, more threads, then flat.
    entry = verdict(flat(100 << 20), lambda t: 40 if t < 50 else 70, lambda t: 130 if t < 50 else 170)
    assert entry["fds_ok"] and entry["threads_ok"]


def test_a_process_started_mid_run_warms_up_from_when_its_fleet_answered() -> None:
    # Born at 40 s, loading until 50 s (RSS climbing), answering from 50 s: judged from 50 + 20 s warm-up.
    loading = verdict(
        lambda t: (50 << 20) if t < 50 else (100 << 20),
        flat(4),
        flat(7),
        born=40,
        events=[{"t": 50.0, "event": "stub kill healed", "fleet": "gpu"}],
    )
    assert loading["judged"] and loading["window_s"][0] >= 70 and loading["rss_ok"]
