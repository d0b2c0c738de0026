"""blip_events.service on the embedded store (SQLite in a temporary folder), the fleet replaced by a scripted
scorer at its one edge (an ``infer`` callable): the gate on real clips, events, the outbox written with the event
change, late and future frames, and a failed inference that leaves no trace."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from blip_bench.frames import SAMPLE
from blip_events.metrics import EventMetrics
from blip_events.records import CameraState
from blip_events.schema import Camera, Change, Delivery, Event
from blip_events.service import CameraService, FrameRefused, Scored
from blip_events.settings import CameraPatch, EventDefaults, EventsPatch, GatePatch, ThresholdsPatch, WebhooksSection
from blip_events.store import Store
from blip_images.clips import lighting, object_enters, static_noise
from blip_images.frame import Frame

T0 = 1_800_000_000.0  # capture times: a fixed clock, so that no frame is "in the future"
DEFAULTS = EventDefaults(
    thresholds={"barking": 0.5},
    questions={"barking": "Is the dog barking?"},
    webhooks=WebhooksSection(allow_insecure=True),
)
HOOK = "http://127.0.0.1:9/hook"  # never called here: the outbox is read from the store


class Scorer:
    """The fleet's stand-in: a score per call from ``script`` (the last one repeats), counting calls."""

    def __init__(self, *script: float) -> None:
        self.script, self.calls = list(script) or [0.1], 0

    async def __call__(self, image: bytes, questions: list[str]) -> Scored:
        score = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return Scored([score] * len(questions), "stand-in", 1)


@pytest.fixture
def service(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'events.sqlite3'}")
    store.migrate()
    made = CameraService(store, DEFAULTS, EventMetrics(CollectorRegistry()), clock=lambda: T0 + 10_000)
    yield made
    made.close()
    store.close()


def add(service: CameraService, patch: CameraPatch | None = None, camera: str = "cam-1") -> None:
    asyncio.run(service.put_camera(camera, patch or CameraPatch(), rotate=False))


def as_frame(data: bytes) -> Frame:
    return Frame(data, max_bytes=20 * 2**20)


def replay(service: CameraService, frames, infer, camera: str = "cam-1", start: float = T0):
    async def body():
        return [await service.process(camera, as_frame(data), start + t, infer) for t, data in frames]

    return asyncio.run(body())


def count(service: CameraService, table) -> int:
    with service.store.session() as session:
        return session.execute(select(func.count()).select_from(table)).scalar()


def test_static_noise_is_inferred_once_per_max_age_s_and_an_entering_object_at_once(service) -> None:
    add(service)
    clip = static_noise(SAMPLE, seconds=60)
    outcomes = replay(service, zip(clip.times, clip.frames), Scorer(0.1))
    inferred = [o for o in outcomes if not o.gated]
    assert len(inferred) == 6, "60 s of noise at max_age_s=10: one inference every 10 s"
    assert [o.reason for o in inferred] == ["first"] + ["max_age"] * 5
    entering = object_enters(SAMPLE)
    outcomes = replay(service, zip(entering.times, entering.frames), Scorer(0.1), start=T0 + 100)
    assert not outcomes[entering.changes[0]].gated, "the frame where the object enters is inferred: 0 frames late"
    assert outcomes[entering.changes[0]].reason in ("changed", "rebaseline")


def test_a_lighting_change_re_baselines(service) -> None:
    add(service)
    clip = lighting(SAMPLE)
    outcomes = replay(service, zip(clip.times, clip.frames), Scorer(0.1))
    for change in clip.changes:  # (at 20 s the last inference is also max_age_s old: either reason infers)
        assert not outcomes[change].gated and outcomes[change].reason in ("rebaseline", "max_age")
        assert outcomes[change + 1].gated, "the new light is the new baseline"
    assert outcomes[clip.changes[1]].reason == "rebaseline"


def test_a_behaviour_starts_an_event_notifies_once_and_ends_after_the_cutoff(service) -> None:
    add(
        service,
        CameraPatch(events=EventsPatch(cutoff_s=5, min_frames=2), gate=GatePatch(max_age_s=1), webhook_url=HOOK),
    )
    frame = static_noise(SAMPLE, seconds=1).frames[0]
    scores = Scorer(0.1, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
    outcomes = replay(service, [(i * 1.0, frame) for i in range(14)], scores)
    kinds = [(i, change.kind) for i, o in enumerate(outcomes) for change in o.events]
    assert kinds[0] == (2, "started") and kinds[-1][1] == "ended"
    assert [k for _, k in kinds].count("started") == 1 and [k for _, k in kinds].count("ended") == 1
    started = outcomes[2].events[0].event
    assert outcomes[3].results[0].state == "active" and outcomes[3].results[0].event_id == started.id
    with service.store.session() as session:
        deliveries = list(session.execute(select(Delivery).order_by(Delivery.created_at)).scalars())
        event = session.get(Event, started.id)
    assert [d.kind for d in deliveries] == ["started", "ended"]
    body = json.loads(deliveries[0].body)
    assert body["delivery_id"] == deliveries[0].id and body["event"]["id"] == started.id
    assert event.state == "ended" and event.peak_score == 0.9 and event.frames_inferred >= 4
    assert Image.open(io.BytesIO(event.keyframe)).size[0] == 320


def test_a_camera_without_a_webhook_gets_events_but_no_outbox_rows(service) -> None:
    add(service)
    frame = static_noise(SAMPLE, seconds=1).frames[0]
    outcomes = replay(service, [(i * 11.0, frame) for i in range(3)], Scorer(0.9))
    assert [c.kind for o in outcomes for c in o.events] == ["started"]
    assert count(service, Delivery) == 0 and count(service, Change) == 1


def test_a_failed_inference_leaves_no_trace(service) -> None:
    add(service)
    frame = static_noise(SAMPLE, seconds=1).frames[0]

    async def broken(image: bytes, questions: list[str]) -> Scored:
        raise RuntimeError("no fleet")

    with pytest.raises(RuntimeError, match="no fleet"):
        replay(service, [(0.0, frame)], broken)
    with service.store.session() as session:
        assert CameraState.model_validate(session.get(Camera, "cam-1").state) == CameraState()
    assert count(service, Event) == count(service, Delivery) == count(service, Change) == 0


def test_late_frames_change_nothing_and_future_ones_are_refused(service) -> None:
    add(service)
    frame = static_noise(SAMPLE, seconds=1).frames[0]
    replay(service, [(10.0, frame)], Scorer(0.1))
    (late,) = replay(service, [(6.0, frame)], Scorer(0.9))
    assert late.late and late.gated and late.results[0].score == 0.1, "answered from the state"
    with pytest.raises(FrameRefused) as stale:
        replay(service, [(4.0, frame)], Scorer(0.9))
    assert stale.value.status == 409 and "6.0 s before" in stale.value.message
    with pytest.raises(FrameRefused) as future:
        replay(service, [(10_000 + 61.0, frame)], Scorer(0.9))
    assert future.value.status == 400 and "in the future" in future.value.message


def test_a_score_in_doubt_is_inferred_until_the_budget_runs_out(service) -> None:
    add(service, CameraPatch(gate=GatePatch(budget_per_minute=5), behaviors={"barking": ThresholdsPatch(enter=0.5)}))
    frame = static_noise(SAMPLE, seconds=1).frames[0]
    outcomes = replay(service, [(i * 0.5, frame) for i in range(12)], Scorer(0.55))
    reasons = [o.reason for o in outcomes]
    assert reasons[:5] == ["first", "uncertain", "uncertain", "uncertain", "uncertain"]
    assert reasons[5:] == ["budget"] * 7, "5 a minute: the rest wait for max_age_s"


def test_a_bad_frame_is_refused_and_stores_nothing(service) -> None:
    add(service)
    with pytest.raises(FrameRefused) as refused:
        replay(service, [(0.0, b"not an image")], Scorer(0.9))
    assert refused.value.status == 400 and "IMAGE is not an image Pillow can identify" in refused.value.message
    with service.store.session() as session:
        assert session.get(Camera, "cam-1").thumbnail is None


def test_an_unknown_behaviour_or_inverted_thresholds_are_refused(service) -> None:
    with pytest.raises(FrameRefused, match=r"unknown behavior\(s\) \['zoomies'\]"):
        add(service, CameraPatch(behaviors={"zoomies": ThresholdsPatch()}))
    with pytest.raises(FrameRefused, match=r"exit 0\.7 is above enter 0\.6"):
        add(service, CameraPatch(behaviors={"barking": ThresholdsPatch(enter=0.6, exit=0.7)}))
    with pytest.raises(FrameRefused, match=r"resolves to 10\.0\.0\.1"):
        add(service, CameraPatch(webhook_url="http://10.0.0.1/hook"))
    assert service.store.get_camera("cam-1") is None, "nothing stored from a refused PUT"


def test_the_frame_checks_its_token_against_the_row_it_reads(service) -> None:
    """The frame route's token check rides on the frame's own read: the current token, and a rotated-out one only
    during its grace period; another camera's token is 403, an unknown one 401, and neither stores anything."""
    service.clock = lambda: T0 + 1
    _, _, first = service.store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=60, now=T0)
    _, _, other = service.store.put_camera("cam-2", CameraPatch(), rotate=False, grace_s=60, now=T0)
    frame = static_noise(SAMPLE, seconds=2).frames[0]

    def post(token: str, at: float):
        return asyncio.run(service.process("cam-1", as_frame(frame), at, Scorer(0.1), token))

    assert not post(first.token, T0).gated  # the current token
    _, _, rotated = service.store.put_camera("cam-1", CameraPatch(), rotate=True, grace_s=60, now=T0)
    assert post(first.token, T0 + 0.5).gated  # the old one, in its grace period
    assert post(rotated.token, T0 + 0.6).gated
    refused = []
    for token in ("not-a-token", other.token):
        with pytest.raises(FrameRefused) as error:
            post(token, T0 + 0.7)
        refused.append((error.value.status, error.value.message))
    assert refused == [(401, "invalid bearer token"), (403, "this token is not camera cam-1's")]
    service.clock = lambda: T0 + 61  # the grace period is over
    with pytest.raises(FrameRefused) as error:
        post(first.token, T0 + 0.8)
    assert error.value.status == 401
    with pytest.raises(FrameRefused) as error:
        asyncio.run(service.process("cam-9", as_frame(frame), T0, Scorer(0.1), rotated.token))
    assert (error.value.status, error.value.message) == (403, "this token is not camera cam-9's")
    with service.store.session() as session:
        assert CameraState.model_validate(session.get(Camera, "cam-1").state).last_captured_at == T0 + 0.6
