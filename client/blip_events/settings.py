"""The event layer's settings: the API config's defaults (``[cameras]``, ``[gate]``, ``[events]``, ``[webhooks]``,
``[mqtt]``, ``[store]``) and a camera's own settings, which ``PUT /admin/cameras/{id}`` changes without a restart.

A camera's record keeps only what its owner set (``CameraPatch``); what it runs with (``CameraSettings``) is that
laid over the defaults at each frame, so that a changed default reaches every camera that did not set its own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, create_model, model_validator

from blip_contract.records import NonNegativeNumber, PositiveInteger, PositiveNumber, Probability, Strict

CAMERA_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
# The exit threshold's default distance below the enter threshold: hysteresis, so that a score hovering at the
# threshold does not start and end events frame after frame.
DEFAULT_EXIT_GAP = 0.15


class GateSettings(Strict):
    """When a frame is inferred rather than answered from the last inferred one."""

    changed_fraction: Probability = Field(
        0.01, description="Infer when more than this share of the thumbnail's pixels changed by over pixel_delta."
    )
    pixel_delta: PositiveInteger = Field(20, le=255, description="Luma levels (of 255) a pixel must move to count.")
    max_age_s: PositiveNumber = Field(10.0, description="Infer when the last inference is older than this.")
    uncertainty: NonNegativeNumber = Field(
        0.1, le=0.5, description="Infer while a smoothed score is within this of its enter threshold."
    )
    budget_per_minute: PositiveInteger = Field(60, description="Inferences per minute; over it, only max_age infers.")
    rebaseline_fraction: Probability = Field(
        0.8, description="A change over this share is the whole scene (lighting): infer and take a new baseline."
    )
    thumbnail_height: PositiveInteger = Field(100, le=480, description="Rows of the luma thumbnail compared.")


class EventSettings(Strict):
    """How inferred scores become events."""

    smoothing: PositiveInteger = Field(3, le=30, description="Inferred scores whose median is the smoothed score.")
    # 3, not 2: on the labelled corpus (make bench-events) 2 gives event precision 0.88 and 3 gives 0.94, both at
    # recall 1.0; the price is one frame (0.5 s at 2 frames/s) of start latency.
    min_frames: PositiveInteger = Field(3, description="Inferred frames in a row at or over enter to start.")
    cutoff_s: PositiveNumber = Field(30.0, description="Seconds below exit that end an event.")
    cooldown_s: NonNegativeNumber = Field(
        60.0, description="A start this soon after the last 'started' reopens that event, unnotified."
    )


class Thresholds(Strict):
    """One behaviour's thresholds: an event starts at ``enter`` and ends below ``exit``."""

    enter: Probability
    exit: Probability

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.exit > self.enter:
            raise ValueError(f"exit {self.exit} is above enter {self.enter}: an event would end before it starts")
        return self


class ThresholdsPatch(Strict):
    enter: Probability | None = None
    exit: Probability | None = None


def _patch_of(model: type[Strict], name: str) -> type[Strict]:
    """``model`` with every field optional (None: not set) and its constraints kept: a PUT body's section, whose
    rules are the defaults' own, written once."""
    fields: dict[str, Any] = {
        field_name: (Annotated[field.annotation, *field.metadata] | None, None)
        for field_name, field in model.model_fields.items()
    }
    return create_model(name, __base__=Strict, __doc__=f"{model.__name__}, every key optional.", **fields)


GatePatch = _patch_of(GateSettings, "GatePatch")
EventsPatch = _patch_of(EventSettings, "EventsPatch")


class CameraPatch(Strict):
    """The body of ``PUT /admin/cameras/{id}``, and what the store keeps: every key optional; a later PUT replaces
    only the keys it names (``merged``)."""

    behaviors: dict[str, ThresholdsPatch] | None = Field(
        None, description="The behaviours watched, by name, each with optional thresholds; absent: every one."
    )
    gate: GatePatch | None = None
    events: EventsPatch | None = None
    webhook_url: str | None = Field(None, max_length=2048)
    mqtt: bool | None = Field(
        None,
        description="Publish this camera's started and ended to the [mqtt] broker too; absent: yes, where [mqtt] "
        "names a broker. A camera can turn it off; it cannot turn on a broker the API does not have.",
    )

    def merged(self, later: CameraPatch) -> CameraPatch:
        """This patch with ``later``'s keys laid over it, key by key (a behaviour's thresholds too)."""
        return CameraPatch.model_validate(
            _merge(self.model_dump(exclude_none=True), later.model_dump(exclude_none=True))
        )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class CameraSettings(Strict):
    """What a camera runs with: its patch laid over the defaults, every value filled in (``GET`` returns this)."""

    behaviors: dict[str, Thresholds]
    gate: GateSettings
    events: EventSettings
    webhook_url: str | None
    mqtt: bool = Field(description="Whether its started and ended go to the [mqtt] broker.")


class CamerasSection(Strict):
    """``[cameras]``: credentials and the frame clock."""

    token_grace_s: NonNegativeNumber = Field(86400.0, description="How long a rotated-out token keeps working.")
    late_tolerance_s: NonNegativeNumber = Field(
        5.0, description="A frame this much older than the last one is answered from the state; older is 409."
    )
    max_future_s: NonNegativeNumber = Field(60.0, description="captured_at this far past the clock is refused.")
    retention_days: PositiveNumber = Field(10.0, description="Events older than this are deleted.")
    retention_interval_s: PositiveNumber = Field(3600.0, description="How often the retention job runs.")


class WebhooksSection(Strict):
    """``[webhooks]``: delivery of ``started`` and ``ended``."""

    allow_insecure: bool = Field(False, description="Allow http and loopback URLs (development and tests only).")
    timeout_s: PositiveNumber = Field(10.0, description="A receiver that has not answered by then is retried.")
    first_retry_s: PositiveNumber = Field(2.0, description="Backoff: the first retry within this, then doubling.")
    max_backoff_s: PositiveNumber = Field(300.0, description="The longest wait between two attempts.")
    give_up_after_s: PositiveNumber = Field(
        86400.0, description="A delivery still failing this long after its event is dead."
    )
    poll_interval_s: PositiveNumber = Field(0.5, description="How often the worker looks for due deliveries.")
    batch: PositiveInteger = Field(32, description="Deliveries claimed at once.")
    lease_s: PositiveNumber = Field(
        60.0, description="A claimed delivery comes back to the queue this long after a worker that died with it."
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> WebhooksSection:
        if self.lease_s <= self.timeout_s:
            raise ValueError(
                f"webhooks.lease_s {self.lease_s:g} must exceed timeout_s {self.timeout_s:g}: a slow send would be sent twice"
            )
        return self


MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
# Where a delivery goes: the camera's webhook_url, or the [mqtt] broker (the camera's event topic).
Channel = Literal["webhook", "mqtt"]


class MqttSection(Strict):
    """``[mqtt]``: the events' ``started`` and ``ended`` published to a broker too, from the same outbox as the
    webhooks (retried with ``[webhooks]``' backoff until the broker acknowledges them). Off without ``url``."""

    url: str | None = Field(
        None, description="The broker: mqtt://host[:1883] or mqtts://host[:8883] (TLS, the system's CAs); none: off."
    )
    username: str | None = Field(None, min_length=1, description="Its password comes from BLIP_MQTT_PASSWORD.")
    topic_prefix: str = Field(
        "blip", min_length=1, max_length=128, description="Events go to <topic_prefix>/cameras/<camera_id>/events."
    )
    qos: Literal[1, 2] = Field(1, description="1: at least once (a duplicate carries its first one's delivery_id).")
    keepalive_s: PositiveInteger = Field(60, description="MQTT keep-alive of the connection.")
    timeout_s: PositiveNumber = Field(10.0, description="A publish the broker has not acknowledged by then is retried.")
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="The client id; none: blip-api-<host>-<pid>, one per process."
    )

    @model_validator(mode="after")
    def _valid(self) -> MqttSection:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
                raise ValueError(f"mqtt.url {self.url!r} is not mqtt://host[:port] or mqtts://host[:port]")
            if parts.username or parts.password:
                raise ValueError(
                    "mqtt.url carries credentials: set mqtt.username, and the password in BLIP_MQTT_PASSWORD"
                )
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"mqtt.url {self.url!r} has a path, query or fragment: only mqtt[s]://host[:port]")
            try:
                parts.port  # noqa: B018 (raises on a port that is no number or out of range)
            except ValueError as error:
                raise ValueError(f"mqtt.url {self.url!r}: {error}") from None
        levels = self.topic_prefix.split("/")
        if any(not level or "+" in level or "#" in level for level in levels) or "\x00" in self.topic_prefix:
            raise ValueError(
                f"mqtt.topic_prefix {self.topic_prefix!r}: topic levels without '+', '#' or empty levels"
                " (no leading, trailing or double '/')"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def broker(self) -> tuple[str, int, bool]:
        """(host, port, tls) of ``url``."""
        if self.url is None:
            raise ValueError("[mqtt] has no url")
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or MQTT_SCHEMES[parts.scheme], parts.scheme == "mqtts"

    def topic(self, camera_id: str) -> str:
        """A camera's event topic. Camera ids hold no '/', '+' or '#' (``CAMERA_ID_PATTERN``)."""
        return f"{self.topic_prefix}/cameras/{camera_id}/events"


class StoreSection(Strict):
    """``[store]``: the database. Its URL comes from ``BLIP_DB_URL`` (a secret, like the tokens), else SQLite."""

    pool_size: PositiveInteger = Field(
        20, description="Connections per API process (PostgreSQL), and threads per frame hop."
    )


class GateSection(GateSettings):
    """``[gate]``: the defaults of every camera's gate."""


class EventsSection(EventSettings):
    """``[events]``: the defaults of every camera's events."""


class EventDefaults(Strict):
    """Everything a camera falls back on, from the API config."""

    thresholds: dict[str, float] = Field(description="Behaviour name -> its default enter threshold.")
    questions: dict[str, str] = Field(description="Behaviour name -> its question.")
    gate: GateSettings = Field(default_factory=GateSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    cameras: CamerasSection = Field(default_factory=CamerasSection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)

    def resolve(self, patch: CameraPatch) -> CameraSettings:
        """The camera's settings: each key it set, else the default. A behaviour not configured is refused."""
        wanted = (
            patch.behaviors if patch.behaviors is not None else {name: ThresholdsPatch() for name in self.thresholds}
        )
        unknown = sorted(set(wanted) - set(self.questions))
        if unknown:
            raise ValueError(f"behaviors: unknown behavior(s) {unknown}; known: {sorted(self.questions)}")
        if not wanted:
            raise ValueError("behaviors: a camera watches at least one behavior")
        behaviors = {}
        for name, given in wanted.items():
            enter = given.enter if given.enter is not None else self.thresholds[name]
            exit_ = given.exit if given.exit is not None else max(round(enter - DEFAULT_EXIT_GAP, 6), 0.001)
            behaviors[name] = Thresholds(enter=enter, exit=exit_)
        gate = self.gate.model_copy(update=patch.gate.model_dump(exclude_none=True) if patch.gate else {})
        events = self.events.model_copy(update=patch.events.model_dump(exclude_none=True) if patch.events else {})
        return CameraSettings(
            behaviors=behaviors,
            gate=GateSettings.model_validate(gate.model_dump()),
            events=EventSettings.model_validate(events.model_dump()),
            webhook_url=patch.webhook_url,
            # Not refused here (every frame resolves): a camera that asked for MQTT before a reload took the broker
            # away keeps its frames, and publishes nothing. PUT refuses asking for it without one.
            mqtt=self.mqtt.enabled and patch.mqtt is not False,
        )
