"""The API tier's settings: one TOML file (``[api]``, ``[behaviors]``, plus the router's sections) and the env.

Secrets never live in the file: the bearer tokens come from ``BLIP_API_TOKEN`` and ``BLIP_API_ADMIN_TOKEN``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from blip_client.router_config import (
    BackendEntry,
    CanarySection,
    RouterConfig,
    RouterConfigError,
    RouterSection,
    check_canary,
)
from blip_contract import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_QUESTIONS
from blip_contract.records import (
    ConfigFileError,
    Name,
    PositiveInteger,
    Probability,
    Record,
    Strict,
    validate_file,
)
from blip_events.settings import (
    CamerasSection,
    EventDefaults,
    EventSettings,
    EventsSection,
    GateSection,
    GateSettings,
    MqttSection,
    StoreSection,
    WebhooksSection,
)
from blip_events.store import DEFAULT_URL

TOKEN_ENV = "BLIP_API_TOKEN"
ADMIN_TOKEN_ENV = "BLIP_API_ADMIN_TOKEN"
# The event store: a SQLAlchemy URL (sqlite:///file, postgresql+psycopg://...), a secret like the tokens.
DB_URL_ENV = "BLIP_DB_URL"
TOKEN_HASH_KEY_ENV = "BLIP_TOKEN_HASH_KEY"
MQTT_PASSWORD_ENV = "BLIP_MQTT_PASSWORD"

DEFAULT_BEHAVIORS = {
    "barking": "Is the dog barking?",
    "chewing_furniture": "Is the dog chewing furniture?",
    "on_the_couch": "Is the dog on the couch?",
    "eating": "Is the pet eating?",
    "sleeping": "Is the pet sleeping?",
}


class SettingsError(ValueError):
    """The API tier cannot start with these settings; the message names the setting."""


class _Settings(Record):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    error_type = SettingsError


class Limits(Strict):
    """What one request may carry (``[api]``); larger or more is refused before any backend is asked."""

    max_image_bytes: PositiveInteger = Field(DEFAULT_MAX_IMAGE_BYTES, description="Largest encoded frame (413 above).")
    max_questions: PositiveInteger = Field(DEFAULT_MAX_QUESTIONS, description="Questions and behaviors (400 above).")
    max_question_chars: PositiveInteger = Field(200, description="Longest question, in characters (400 above).")
    # HTTP framing: uvicorn's h11 caps only a header block still arriving; the app caps every request's.
    max_header_bytes: PositiveInteger = Field(16 * 1024, description="Request header block, in bytes (431 above).")
    max_headers: PositiveInteger = Field(64, description="Request headers (431 above).")
    send: Literal["pixels", "image"] = Field(
        "pixels",
        description="pixels: frames are decoded, checked and resized here, for each fleet by its own settings, and "
        "the fleet does accelerator work only; image: the encoded file goes to the fleet, which decodes it.",
    )


DEFAULT_ALERT_THRESHOLD = 0.5


class Alerts(Strict):
    """``[alerts]``: when a per-frame result alerts."""

    threshold: Probability = Field(
        DEFAULT_ALERT_THRESHOLD, description="A question alerts when P(yes) against no reaches this."
    )


Question = Annotated[str, Field(min_length=1, pattern=r"\S")]


class ApiFile(Strict):
    """``client/api.toml`` whole: every section and key it may hold. Anything else is refused at load."""

    router: RouterSection = Field(default_factory=RouterSection)
    backends: dict[Name, BackendEntry] = Field(default_factory=dict)
    api: Limits = Field(default_factory=Limits)
    alerts: Alerts = Field(default_factory=Alerts)
    behaviors: dict[Name, Question] = Field(
        default_factory=lambda: dict(DEFAULT_BEHAVIORS), description="Behavior name -> the question it asks."
    )
    cameras: CamerasSection = Field(default_factory=CamerasSection)
    gate: GateSection = Field(default_factory=GateSection)
    events: EventsSection = Field(default_factory=EventsSection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    store: StoreSection = Field(default_factory=StoreSection)
    canary: CanarySection | None = Field(None, description="Shadow traffic to a candidate fleet, and its promotion.")


class ApiSettings(_Settings):
    """Everything the API tier runs with: the router's config, the limits, the behaviors, the tokens."""

    router: RouterConfig
    limits: Limits = Field(default_factory=Limits)
    behaviors: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_BEHAVIORS), description="Behavior name -> the question it asks."
    )
    alert_threshold: Probability = Field(DEFAULT_ALERT_THRESHOLD, description="[alerts] threshold.")
    canary: CanarySection | None = Field(None, description="[canary]: the candidate fleet it shadows, if any.")
    token: str | None = Field(None, description=f"The cameras' bearer token, from {TOKEN_ENV} (never the file).")
    admin_token: str | None = Field(None, description=f"The admin API's bearer token, from {ADMIN_TOKEN_ENV}.")
    insecure_dev: bool = Field(False, description="Accept every request unauthenticated (development only).")
    config_path: Path | None = Field(None, description="The file these came from; the admin API reloads it.")
    events: EventDefaults = Field(
        default_factory=lambda: EventDefaults(
            thresholds=dict.fromkeys(DEFAULT_BEHAVIORS, DEFAULT_ALERT_THRESHOLD), questions=dict(DEFAULT_BEHAVIORS)
        ),
        description="What every camera falls back on: [gate], [events], [cameras], [webhooks], [mqtt], the behaviors.",
    )
    store: StoreSection = Field(default_factory=StoreSection)
    db_url: str = Field(
        DEFAULT_URL, description=f"The event store, from {DB_URL_ENV}; else SQLite in the working directory."
    )
    token_hash_key: str | None = Field(
        None, description=f"The key of the cameras' token hashes, from {TOKEN_HASH_KEY_ENV}."
    )
    mqtt_password: str | None = Field(None, description=f"[mqtt] username's password, from {MQTT_PASSWORD_ENV}.")

    @model_validator(mode="after")
    def _authenticated(self) -> ApiSettings:
        if not self.insecure_dev and not self.token:
            raise ValueError(
                f"no API token: set {TOKEN_ENV} (bearer token the cameras send), or run in insecure dev mode "
                "(--insecure-dev / BLIP_INSECURE_DEV=1), which accepts every request unauthenticated"
            )
        return self

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        insecure_dev: bool = False,
        path: Path | None = None,
    ) -> ApiSettings:
        """Settings from a parsed config file, validated whole: an unknown key anywhere is refused."""
        env = os.environ if env is None else env
        try:
            parsed = validate_file(ApiFile, data, path or "config")
            router = RouterConfig.from_sections(parsed.router, parsed.backends)
            if parsed.canary is not None:
                check_canary(parsed.canary, parsed.backends)
        except (ConfigFileError, RouterConfigError) as error:
            raise SettingsError(str(error)) from None
        return cls(
            router=router,
            limits=parsed.api,
            behaviors=parsed.behaviors,
            alert_threshold=parsed.alerts.threshold,
            canary=parsed.canary,
            token=env.get(TOKEN_ENV) or None,
            admin_token=env.get(ADMIN_TOKEN_ENV) or None,
            insecure_dev=insecure_dev,
            config_path=path,
            events=EventDefaults(
                thresholds=dict.fromkeys(parsed.behaviors, parsed.alerts.threshold),
                questions=parsed.behaviors,
                gate=GateSettings.model_validate(parsed.gate.model_dump()),
                events=EventSettings.model_validate(parsed.events.model_dump()),
                cameras=parsed.cameras,
                webhooks=parsed.webhooks,
                mqtt=parsed.mqtt,
            ),
            store=parsed.store,
            db_url=env.get(DB_URL_ENV) or DEFAULT_URL,
            token_hash_key=env.get(TOKEN_HASH_KEY_ENV) or None,
            mqtt_password=env.get(MQTT_PASSWORD_ENV) or None,
        )

    @classmethod
    def load(cls, path: Path, *, env: Mapping[str, str] | None = None, insecure_dev: bool = False) -> ApiSettings:
        return cls.from_dict(read_toml(path), env=env, insecure_dev=insecure_dev, path=path)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"cannot read config {path}: {error}") from error
