"""The event layer's Prometheus metrics, in the API tier's registry (the router's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from blip_events.settings import Channel

DELIVERY_RESULTS = ("sent", "failed", "retried", "dead")
EVENT_TRANSITIONS = ("started", "ended")


class EventMetrics:
    """The series an alert reads start at zero (``behaviors``: the configured ones), so that a first dead delivery
    or a first event is an increase Prometheus sees, not a series appearing."""

    def __init__(self, registry: CollectorRegistry, behaviors: Iterable[str] = ()) -> None:
        r = registry
        self.frames = Counter(
            "blip_camera_frames", "Camera frames received, by outcome and reason", ["outcome", "reason"], registry=r
        )
        self.events = Counter(
            "blip_events", "Behaviour events started, reopened and ended", ["behavior", "transition"], registry=r
        )
        self.deliveries = Counter(
            "blip_deliveries",
            "Delivery attempts by channel (webhook, mqtt): sent, failed; each failure then retried or dead",
            ["result", "channel"],
            registry=r,
        )
        self.outbox_age = Gauge(
            "blip_outbox_oldest_pending_seconds", "Age of the oldest undelivered notification", registry=r
        )
        self.store_seconds = Histogram(
            "blip_store_seconds",
            "Store time per camera frame (reads and writes, inference excluded)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        for result in DELIVERY_RESULTS:
            for channel in get_args(Channel):
                self.deliveries.labels(result, channel)
        for behavior in behaviors:
            for transition in EVENT_TRANSITIONS:
                self.events.labels(behavior, transition)
