"""One camera frame through the event layer: the gate, the fleet when it is worth asking, every watched
behaviour's state machine, the events, the outbox and the change log, in one store transaction.

Frames of one camera are processed one at a time and in capture order: in this process by a per-camera lock, across
replicas by the store's row lock (PostgreSQL). A frame older than the last processed one changes nothing: within
``late_tolerance_s`` it is answered from the state, beyond it refused (409). A frame that fails (bad image, no fleet)
leaves no trace: its transaction is rolled back.

A frame's two hops run on two thread pools of the service's own. The first may wait for the camera's row, which a
frame on another replica holds across its inference; the second runs with the row held and waits for no other
frame. On one shared pool the waits could take every thread while the holders' writes queued behind them, on both
replicas at once, and no frame moved again: a deadlock that the database cannot see, and CI once did (a 60 s read
timeout in tests/integration/test_replicas.py). Apart, a frame that holds a row always gets a thread to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from blip_contract.errors import InvalidInputError
from blip_events import gate
from blip_events.machine import BehaviorState, Transition, observe
from blip_events.metrics import EventMetrics
from blip_events.notify import check_url
from blip_events.records import BehaviorOutcome, CameraState, EventChange, FrameOutcome, rfc3339
from blip_events.schema import Event
from blip_events.settings import CameraPatch, CameraSettings, EventDefaults
from blip_events.store import CameraRecord, CameraRow, Credentials, FrameTransaction, Store, event_view
from blip_images.frame import Frame

BUDGET_WINDOW_S = 60.0

TRACER = trace.get_tracer("blip_events.service")


class FrameRefused(Exception):
    """A camera request refused with ``status`` (4xx); the message names what was wrong. Nothing was stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Scored:
    """What the fleet said of one frame: a score per question, in order, and who answered."""

    scores: list[float]
    backend: str
    attempts: int


Infer = Callable[[Frame, list[str]], Awaitable[Scored]]

INVALID_TOKEN = "invalid bearer token"


@dataclass
class Step:
    """A frame between its hops: what its first read found and decided (``decision`` None: a late frame)."""

    row: CameraRow
    settings: CameraSettings
    state: CameraState
    thumb: gate.Thumbnail
    decision: gate.Decision | None
    changes: list[EventChange]
    store_s: float


class CameraService:
    """The event layer as the API tier's routes call it."""

    def __init__(
        self, store: Store, defaults: EventDefaults, metrics: EventMetrics, clock: Callable[[], float] = time.time
    ) -> None:
        self.store, self.defaults, self.metrics, self.clock = store, defaults, metrics, clock
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # As many threads a hop as the store has connections: a thread in a hop holds one (module docstring).
        self._reading = ThreadPoolExecutor(store.pool_size, thread_name_prefix="frame-read")
        self._writing = ThreadPoolExecutor(store.pool_size, thread_name_prefix="frame-write")

    def close(self) -> None:
        """After the last request: the hops' threads, once their work is done."""
        self._reading.shutdown()
        self._writing.shutdown()

    @staticmethod
    async def _hop(pool: ThreadPoolExecutor, work: Callable[..., Any], *args: Any) -> Any:
        """``work`` on ``pool``, in this task's context (its trace span), as ``asyncio.to_thread`` does on the
        loop's default pool."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(context.run, work, *args))

    # ---- cameras -------------------------------------------------------------------------------------------------

    def settings_of(self, record: CameraRecord) -> CameraSettings:
        return self.defaults.resolve(record.patch)

    async def put_camera(
        self, camera_id: str, patch: CameraPatch, rotate: bool
    ) -> tuple[CameraRecord, bool, Credentials | None]:
        """Create or update; the merged settings must resolve, the webhook URL must be allowed, and MQTT asked for
        only where the API has a broker, else 400."""
        existing = await asyncio.to_thread(self.store.get_camera, camera_id)
        merged = existing.patch.merged(patch) if existing else patch
        try:
            self.defaults.resolve(merged)
        except ValueError as error:
            raise FrameRefused(400, str(error)) from None
        if patch.mqtt and not self.defaults.mqtt.enabled:
            raise FrameRefused(400, "mqtt: this API has no [mqtt] broker (no mqtt.url) for a camera to publish to")
        if patch.webhook_url is not None:
            try:
                await asyncio.to_thread(check_url, patch.webhook_url, self.defaults.webhooks.allow_insecure)
            except ValueError as error:
                raise FrameRefused(400, str(error)) from None
        return await asyncio.to_thread(
            self.store.put_camera, camera_id, patch, rotate=rotate, grace_s=self.defaults.cameras.token_grace_s
        )

    # ---- frames --------------------------------------------------------------------------------------------------

    def _lock(self, camera_id: str) -> asyncio.Lock:
        lock = self._locks.get(camera_id)
        if lock is None:
            lock = self._locks[camera_id] = asyncio.Lock()
        return lock

    def authorize(self, camera_id: str, token: str) -> None:
        """The camera routes' rule, in a worker thread: a token no camera holds is 401, another camera's is 403."""
        owner = self.store.token_owner(token, self.clock())
        if owner is None:
            raise FrameRefused(401, INVALID_TOKEN)
        if owner != camera_id:
            raise FrameRefused(403, f"this token is not camera {camera_id}'s")

    async def process(
        self, camera_id: str, image: Frame, captured_at: float | None, infer: Infer, token: str | None = None
    ) -> FrameOutcome:
        """One frame. ``token``: the caller's bearer token, checked against the camera's row as it is read (None:
        not checked, the API's insecure development mode)."""
        now = self.clock()
        at = now if captured_at is None else captured_at
        if at > now + self.defaults.cameras.max_future_s:
            raise FrameRefused(
                400, f"captured_at {rfc3339(at)} is more than {self.defaults.cameras.max_future_s:g} s in the future"
            )
        async with self._lock(camera_id):
            with self.store.frame(camera_id) as txn:
                # A gated frame takes one worker-thread hop: its row (locked on PostgreSQL), its thumbnail, the
                # gate's decision and its writes. An inferred frame takes a second one, for its writes after the fleet.
                step: Step = await self._hop(self._reading, self._gate, txn, camera_id, token, image, at)
                decision = step.decision
                if decision is None:
                    self.metrics.frames.labels("late", "late").inc()
                    return self._outcome(camera_id, at, step.settings, step.state, None, "late", [], late=True)
                trace.get_current_span().set_attributes(
                    {"blip.camera": camera_id, "blip.gate": decision.reason, "blip.inferred": decision.infer}
                )
                scored, changes, store_s = None, step.changes, step.store_s
                if decision.infer:
                    questions = [self.defaults.questions[name] for name in step.settings.behaviors]
                    scored = await infer(image, questions)
                    changes, write_s = await self._hop(self._writing, self._store, txn, step, at, scored, image)
                    store_s += write_s
            self.metrics.store_seconds.observe(store_s)
            self.metrics.frames.labels("inferred" if decision.infer else "gated", decision.reason).inc()
            for change in changes:
                if change.kind != "updated":
                    self.metrics.events.labels(change.event.behavior, change.kind).inc()
            return self._outcome(camera_id, at, step.settings, step.state, scored, decision.reason, changes)

    def _gate(self, txn: FrameTransaction, camera_id: str, token: str | None, image: Frame, at: float) -> Step:
        """The first hop, in a worker thread: read, check the token, decide; a gated frame's writes too."""
        with TRACER.start_as_current_span("events.read", attributes={"blip.camera": camera_id}):
            started = time.perf_counter()
            row = txn.load()
            store_s = time.perf_counter() - started
            if token is not None and (row is None or not self.store.opens(row, token, self.clock())):
                txn.rollback()  # the row lock is not held while another camera's tokens are looked up
                self.authorize(camera_id, token)  # 401 or 403; it returns only for a token just rotated in
                raise FrameRefused(409, f"camera {camera_id}'s token changed while its frame was read; send it again")
            if row is None:
                raise FrameRefused(404, f"no camera {camera_id!r}")
            settings = self.defaults.resolve(CameraPatch.model_validate(row.settings))
            state = CameraState.model_validate(row.state)
            try:  # before anything else: a late frame that is no image is refused too
                thumb = gate.thumbnail(image, settings.gate.thumbnail_height)
            except InvalidInputError as error:
                raise FrameRefused(400, str(error)) from None
        step = Step(row, settings, state, thumb, None, [], store_s)
        if self._late(state, at):
            return step
        step.decision = self._decide(row, settings, state, at, thumb)
        if step.decision.infer:
            txn.pause()
        else:
            step.changes, write_s = self._store(txn, step, at, None, image)
            step.store_s += write_s
        return step

    def _store(
        self, txn: FrameTransaction, step: Step, at: float, scored: Scored | None, image: Frame
    ) -> tuple[list[EventChange], float]:
        """The frame's writes and commit, timed (the store's share of the frame)."""
        with TRACER.start_as_current_span("events.store", attributes={"blip.camera": txn.camera_id}) as span:
            started = time.perf_counter()
            changes = self._apply(txn, step.row, step.settings, step.state, at, step.thumb, scored, image)
            span.set_attribute("blip.event_changes", [change.kind for change in changes])
            return changes, time.perf_counter() - started

    def _late(self, state: CameraState, at: float) -> bool:
        """True for a late frame within the tolerance; 409 beyond it; False for a frame in order."""
        last = state.last_captured_at
        if last is None or at >= last:
            return False
        if last - at <= self.defaults.cameras.late_tolerance_s:
            return True
        raise FrameRefused(
            409,
            f"captured_at {rfc3339(at)} is {last - at:.1f} s before this camera's last frame ({rfc3339(last)}); "
            f"frames more than {self.defaults.cameras.late_tolerance_s:g} s late are refused",
        )

    def _decide(
        self, row: CameraRow, settings: CameraSettings, state: CameraState, at: float, thumb: gate.Thumbnail
    ) -> gate.Decision:
        change = None
        if row.thumbnail is not None and row.thumbnail_width and row.thumbnail_height:
            before = gate.Thumbnail(row.thumbnail_width, row.thumbnail_height, row.thumbnail)
            change = gate.changed_fraction(before, thumb, settings.gate.pixel_delta)
        smoothed = {name: b.smoothed for name, b in state.behaviors.items() if b.smoothed is not None}
        unscored = any(name not in state.scores for name in settings.behaviors)
        recent = sum(1 for t in state.inferred_at if at - t < BUDGET_WINDOW_S)
        return gate.decide(
            settings.gate,
            at=at,
            last_inferred_at=None if unscored else state.last_inferred_at,
            inferred_last_minute=recent,
            change=change,
            uncertain=gate.in_doubt(settings, smoothed),  # type: ignore[arg-type]
        )

    def _apply(
        self,
        txn: FrameTransaction,
        row: CameraRow,
        settings: CameraSettings,
        state: CameraState,
        at: float,
        thumb: gate.Thumbnail,
        scored: Scored | None,
        image: Frame,
    ) -> list[EventChange]:
        """Every write of one frame, in its transaction; runs in a worker thread."""
        now = self.clock()
        changes: list[EventChange] = []
        # No receiver, no outbox row: the camera's webhook_url, and the [mqtt] broker unless the camera turned it off.
        txn.channels = (("webhook",) if settings.webhook_url is not None else ()) + (("mqtt",) if settings.mqtt else ())
        state.inferred_at = [t for t in state.inferred_at if at - t < BUDGET_WINDOW_S]
        baseline = None  # an inferred frame's thumbnail is the gate's next baseline
        if scored is not None:
            baseline = (thumb.pixels, thumb.width, thumb.height)
            state.last_inferred_at = at
            state.inferred_at.append(at)
            state.scores = {**state.scores, **dict(zip(settings.behaviors, scored.scores, strict=True))}
        state.last_captured_at = at
        for name in [n for n in state.behaviors if n not in settings.behaviors]:
            self._retire(txn, state.behaviors.pop(name), at, now, changes)
        keyframe: dict[str, bytes] = {}  # one decode however many behaviours peak on this frame

        def key() -> bytes:
            if "jpeg" not in keyframe:
                keyframe["jpeg"] = gate.keyframe(image)
            return keyframe["jpeg"]

        for index, (name, thresholds) in enumerate(settings.behaviors.items()):
            score = scored.scores[index] if scored is not None else None
            before = state.behaviors.get(name, BehaviorState())
            after, transition = observe(before, score, at, thresholds, settings.events)
            if transition is Transition.STARTED:
                if score is None:
                    raise RuntimeError(f"{name}: the machine started an event on a gated frame")
                created = txn.new_event(
                    camera_id=row.id,
                    behavior=name,
                    question=self.defaults.questions[name],
                    state="active",
                    started_at=at,
                    ended_at=None,
                    peak_score=score,
                    peak_at=at,
                    frames_inferred=1,
                    frames_gated=0,
                    keyframe=key(),
                    updated_at=now,
                )
                after.event_id = created.id
                self._tell(txn, created, "started", now, changes, notify=True)
            elif after.active or transition is Transition.ENDED:
                event_id = after.event_id if after.active else after.last_event_id
                found = txn.event(event_id) if event_id else None
                if found is not None:
                    self._follow(txn, found, transition, score, at, now, after, key, changes)
            state.behaviors[name] = after
        txn.save_camera(state.model_dump(), baseline)
        txn.commit()
        return changes

    def _follow(
        self,
        txn: FrameTransaction,
        found: Event,
        transition: Transition | None,
        score: float | None,
        at: float,
        now: float,
        after: BehaviorState,
        key: Callable[[], bytes],
        changes: list[EventChange],
    ) -> None:
        """An open event through one more frame: counts, a new peak (and key frame), a reopening or its end."""
        found.updated_at = now
        if score is None:
            found.frames_gated += 1
        else:
            found.frames_inferred += 1
        rose = score is not None and score > found.peak_score
        if rose:
            found.peak_score, found.peak_at, found.keyframe = score, at, key()
        if transition is Transition.REOPENED:
            found.state, found.ended_at = "active", None
            self._tell(txn, found, "updated", now, changes, notify=False)
        elif transition is Transition.ENDED:
            found.state, found.ended_at = "ended", after.below_since if after.below_since is not None else at
            self._tell(txn, found, "ended", now, changes, notify=True)
        elif rose:
            self._tell(txn, found, "updated", now, changes, notify=False)

    def _retire(
        self, txn: FrameTransaction, behavior: BehaviorState, at: float, now: float, changes: list[EventChange]
    ) -> None:
        """A behaviour the camera stopped watching: its open event ends now."""
        found = txn.event(behavior.event_id) if behavior.active and behavior.event_id else None
        if found is not None:
            found.state, found.ended_at, found.updated_at = "ended", at, now
            self._tell(txn, found, "ended", now, changes, notify=True)

    def _tell(
        self, txn: FrameTransaction, found: Event, kind: str, now: float, changes: list[EventChange], *, notify: bool
    ) -> None:
        txn.flush()
        view = event_view(found)
        if notify and txn.channels:
            txn.outbox(kind, view, now)
        txn.change(kind, view, now)
        changes.append(EventChange(kind=kind, event=view))  # type: ignore[arg-type]

    def _outcome(
        self,
        camera_id: str,
        at: float,
        settings: CameraSettings,
        state: CameraState,
        scored: Scored | None,
        reason: str,
        changes: list[EventChange],
        *,
        late: bool = False,
    ) -> FrameOutcome:
        results = []
        for index, name in enumerate(settings.behaviors):
            behavior = state.behaviors.get(name, BehaviorState())
            if scored is not None:
                score, source, scored_at = scored.scores[index], "inferred", at
            elif name in state.scores:
                score, source, scored_at = state.scores[name], "reused", state.last_inferred_at
            else:
                score, source, scored_at = None, "none", None
            results.append(
                BehaviorOutcome(
                    behavior=name,
                    question=self.defaults.questions[name],
                    score=None if score is None else round(score, 6),
                    source=source,  # type: ignore[arg-type]
                    scored_at=rfc3339(scored_at),
                    state="active" if behavior.active else "idle",
                    event_id=behavior.event_id if behavior.active else None,
                )
            )
        extra: dict[str, Any] = {"backend": scored.backend, "attempts": scored.attempts} if scored else {}
        return FrameOutcome(
            camera_id=camera_id,
            captured_at=rfc3339(at) or "",
            gated=scored is None,
            reason=reason,
            late=late,
            results=results,
            events=changes,
            **extra,
        )
