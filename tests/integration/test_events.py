"""``make bench-events``' measurements, run small against real processes: nothing is lost when the API is killed
with SIGKILL mid-replay and the webhook receiver fails every other request; the event stream (Server-Sent Events)
of a real ``blip-api`` process carries an event's changes; the gate section counts Triton's inferences; the cost
section's rounds post what they say they measure."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from blip_bench.events import QUIET_ROUTER, add_camera, cost_section, durability, gate_section, post_frame
from blip_bench.frames import SAMPLE
from blip_bench.stack import ApiProcess, write_api_config
from blip_images.clips import object_enters, static_noise


@pytest.fixture(scope="module")
def fleet(colocated_fleet):
    return colocated_fleet


def test_no_started_or_ended_is_lost_when_the_api_is_killed_and_the_receiver_fails_half(fleet, tmp_path) -> None:
    figures = durability(fleet, tmp_path, kills=2, frames=48, flip_every=8)
    print(json.dumps(figures))
    assert figures["kills"] == 2 and figures["events"] >= 2
    assert figures["requests_failed_by_receiver"] >= 1, "the receiver failed some: they had to be retried"
    assert figures["lost"] == 0 and figures["not_sent_in_store"] == 0
    assert figures["one_key_per_change"] and figures["one_body_per_key"], "a duplicate carries its first key"


def test_the_gate_section_counts_tritons_inferences(fleet, tmp_path) -> None:
    config = write_api_config(tmp_path / "api.toml", {"fleet": fleet.http_url}, probe_interval_s=QUIET_ROUTER)
    api = ApiProcess(config, tmp_path / "api.log")
    try:
        (row,) = gate_section(api, fleet, [object_enters(SAMPLE)], cameras=2, speed=0)
    finally:
        api.stop()
    assert row["frames_posted"] == 160 and row["frames_inferred_triton"] == row["frames_inferred_api"]
    assert row["gated_fraction"] > 0.5 and row["frames_from_change_to_inference"] == [0, 0]


def test_the_cost_sections_rounds_gate_every_still_frame_and_infer_every_flipped_one(fleet, tmp_path) -> None:
    """Its figures are CPU time, not asserted; what is: each kind's frames were the kind it reports (a still frame
    gated, a flipped one inferred, past the default budget of 60 a minute: 2 rounds of 40 put 80 flipped frames in
    one minute of capture time), and each figure spans its rounds."""
    config = write_api_config(tmp_path / "api.toml", {"fleet": fleet.http_url}, probe_interval_s=QUIET_ROUTER)
    api = ApiProcess(config, tmp_path / "api.log")
    try:
        (row,) = cost_section(api, [(320, 180)], frames=40, rounds=2)
    finally:
        api.stop()
    assert (row["frames"], row["rounds"]) == (40, 2) and row["gated_share"] == 1.0 and row["inferred_share"] == 1.0
    kinds = ("gated_cpu_ms", "gated_event_loop_ms", "inferred_cpu_ms", "stateless_cpu_ms", "livez_cpu_ms")
    for name in (*kinds, "luma_decode_ms"):
        spread = row[name]
        assert 0 <= spread["min"] <= spread["median"] <= spread["max"], (name, spread)
    assert row["gated_event_loop_ms"]["max"] <= row["gated_cpu_ms"]["max"], "the event loop is part of the process"
    assert row["gated_floor_ms"] == round(row["luma_decode_ms"]["min"] + row["livez_cpu_ms"]["min"], 2)
    assert row["store_ms_per_frame"] > 0


def test_the_event_stream_carries_started_and_ended_in_order(fleet, tmp_path) -> None:
    sections = {"events": {"cutoff_s": 1.0, "min_frames": 2}, "gate": {"max_age_s": 0.4}}
    config = write_api_config(
        tmp_path / "api.toml", {"fleet": fleet.http_url}, probe_interval_s=QUIET_ROUTER, sections=sections
    )
    api = ApiProcess(config, tmp_path / "api.log")
    try:
        camera = add_camera(api.url, "streamed", behaviors={"barking": {"enter": 0.001, "exit": 0.001}})
        frames = static_noise(SAMPLE, seconds=2).frames
        start = time.time() - 60
        seen: list[tuple[str, dict]] = []
        with (
            httpx.Client() as client,
            client.stream(
                "GET", f"{api.url}/v1/cameras/streamed/events/stream", headers=camera.auth, timeout=30
            ) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            for index in range(3):
                post_frame(client, api.url, camera, frames[index % 2], start + index * 0.5)
            client.put(
                f"{api.url}/admin/cameras/streamed",
                json={"behaviors": {"barking": {"enter": 0.9999, "exit": 0.9999}}},
                headers={"Authorization": "Bearer admin-token"},
            ).raise_for_status()
            for index in range(3, 8):
                post_frame(client, api.url, camera, frames[index % 2], start + index * 0.5)
            kind = None
            deadline = time.monotonic() + 20
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind:
                    seen.append((kind, json.loads(line.removeprefix("data: "))))
                if any(k == "ended" for k, _ in seen) or time.monotonic() > deadline:
                    break
        kinds = [k for k, _ in seen]
        assert kinds[0] == "started" and kinds[-1] == "ended", seen
        assert len({event["id"] for _, event in seen}) == 1
    finally:
        api.stop()
