"""What the routes share: the settings in force, the router, the status counter; and how a route gets them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter, Histogram

from blip_api.errors import ApiError
from blip_api.settings import ApiSettings, Limits
from blip_client.canary import Canary
from blip_client.router import Router
from blip_events.service import CameraService

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


class BehaviorMetrics:
    """Every behaviour score a fleet returned, from both frame routes: its distribution, and how many reached the
    tier's alert threshold. A drifting model or a new camera angle moves the scores; an alert storm moves the
    share that alerts (``deploy/kubernetes/base/monitoring`` alerts on a sudden change). A camera's own thresholds
    decide its events (``blip_events_total``); this share is at the tier's ``[alerts] threshold``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.scores = Histogram(
            "blip_behavior_score",
            "P(yes) of each behaviour scored",
            ["behavior"],
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.results = Counter(
            "blip_behavior_results",
            "Behaviour scores by whether they reached the tier's alert threshold",
            ["behavior", "alert"],
            registry=registry,
        )

    def observe(self, behavior: str, score: float, alert: bool) -> None:
        self.scores.labels(behavior).observe(score)
        self.results.labels(behavior, "true" if alert else "false").inc()


@dataclass
class ApiState:
    """What the routes share: the settings in force (a reload swaps them), the router and the status counter."""

    settings: ApiSettings
    router: Router
    served: Counter
    behaviors: BehaviorMetrics
    # Where /metrics is served instead of the public port (None: on the public port, as in development).
    metrics_port: int | None = None
    # The event layer, once the app's lifespan has opened its store.
    cameras: CameraService | None = None
    # Shadow traffic to a candidate fleet ([canary]), once the router has started.
    canary: Canary | None = None

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    def reload_config(self) -> dict[str, list[str]]:
        """Re-read the config file the API started with; the running settings stay if it is invalid."""
        path = self.settings.config_path
        if path is None:
            raise ApiError(409, "this API tier was started without a config file; nothing to reload")
        new = ApiSettings.load(path, insecure_dev=self.settings.insecure_dev)
        if new.events.mqtt != self.settings.events.mqtt:
            # The broker connection is the delivery worker's, opened at start: a reload would leave it on the old one.
            raise ApiError(409, "[mqtt] changed: restart the API tier to publish to another broker; nothing reloaded")
        changes = self.router.apply_config(new.router)
        if new.canary != self.settings.canary:
            self.start_canary(new)
        self.settings = new
        if self.cameras is not None:
            self.cameras.defaults = new.events  # every camera's next frame falls back on the new defaults
        return changes

    def start_canary(self, settings: ApiSettings) -> None:
        """The canary ``settings`` name (none without ``[canary]``), in place of the running one, whose figures end."""
        if self.canary is not None:
            self.canary.close()
        self.canary = Canary(settings.canary, self.router, settings.alert_threshold) if settings.canary else None


async def api_state(request: Request) -> ApiState:
    return request.app.state.blip


State = Annotated[ApiState, Depends(api_state)]
