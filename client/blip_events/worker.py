"""The outbox's worker: it claims due deliveries, POSTs them signed (or publishes them to the MQTT broker:
``blip_events.mqtt``), and marks each sent, retried or dead.

Every connection goes through ``CheckedResolver``, which resolves the webhook's host itself and refuses an internal
address at connect time (DNS rebinding: the name that was public when the URL was set may not be now). aiohttp, the
HTTP client the project already has (tritonclient's), does the rest.

The worker reads ``[webhooks]`` where the settings in force are, at every use: a reload that changes the backoff,
the give-up age, the timeout or ``allow_insecure`` applies to the next pass and the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from blip_events.metrics import EventMetrics
from blip_events.mqtt import MqttPublisher
from blip_events.notify import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WebhookRefused,
    address_allowed,
    parse_url,
    retry_delay,
    sign,
)
from blip_events.settings import Channel, WebhooksSection
from blip_events.store import Claimed, Store

log = logging.getLogger("blip_events.worker")
# One span per delivery attempt (the outbox is drained in a task of its own: each is the root of its trace).
TRACER = trace.get_tracer("blip_events.worker")


class CheckedResolver(AbstractResolver):
    """Resolve as the OS does, and refuse the name if any address it gives is internal."""

    def __init__(self, allow_insecure: Callable[[], bool]) -> None:
        """``allow_insecure``: read at each resolution, so that a reload turning it off holds for the next one."""
        self.allow_insecure = allow_insecure

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[ResolveResult] = []
        for fam, _, proto, _, address in infos:
            ip = str(address[0])
            if not address_allowed(ip, self.allow_insecure()):
                raise OSError(f"{host} resolves to {ip}, an internal address: no webhook is sent there")
            results.append(
                {
                    "hostname": host,
                    "host": ip,
                    "port": int(address[1]),
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None


class DeliveryWorker:
    """``run`` until cancelled: claim, send, record; bounded per pass by ``batch`` and each send by ``timeout_s``."""

    def __init__(
        self,
        store: Store,
        webhooks: Callable[[], WebhooksSection],
        metrics: EventMetrics,
        mqtt: MqttPublisher | None = None,
    ) -> None:
        """``webhooks``: the ``[webhooks]`` in force (a reload swaps it); ``mqtt``: the broker's publisher where
        ``[mqtt]`` is configured. ``[webhooks]``' backoff serves both."""
        self.store, self._webhooks, self.metrics = store, webhooks, metrics
        self._session: aiohttp.ClientSession | None = None
        # What each channel's delivery is sent by: the channels this worker claims, and no others.
        self._senders: dict[Channel, Callable[[Claimed], Awaitable[str | None]]] = {"webhook": self._send}
        if mqtt is not None:
            self._senders["mqtt"] = lambda item: mqtt.publish(item.camera_id, item.body)

    @property
    def webhooks(self) -> WebhooksSection:
        return self._webhooks()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(lambda: self.webhooks.allow_insecure), limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            while True:
                try:
                    sent = await self.pass_once()
                except Exception:  # a store hiccup must never stop the deliveries
                    log.exception("delivery pass failed")
                    sent = 0
                if not sent:
                    await asyncio.sleep(self.webhooks.poll_interval_s)

    async def pass_once(self) -> int:
        """One claim and its sends; returns how many deliveries were attempted."""
        now = time.time()
        claimed = await asyncio.to_thread(
            self.store.claim_due, now, self.webhooks.batch, self.webhooks.lease_s, tuple(self._senders)
        )
        if claimed:
            await asyncio.gather(*(self._attempt(item) for item in claimed))
        oldest = await asyncio.to_thread(self.store.oldest_pending)
        self.metrics.outbox_age.set(0 if oldest is None else max(time.time() - oldest, 0))
        return len(claimed)

    async def _attempt(self, item: Claimed) -> None:
        attributes = {
            "blip.delivery": item.id,
            "blip.camera": item.camera_id,
            "blip.kind": item.kind,
            "blip.attempt": item.attempts,
        }
        name = f"{item.channel}.deliver"  # webhook.deliver, mqtt.deliver
        with TRACER.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
            await self._deliver(item, span)

    async def _deliver(self, item: Claimed, span: Span) -> None:
        error = await self._senders[item.channel](item)
        now = time.time()
        if error is None:
            self.metrics.deliveries.labels("sent", item.channel).inc()
            span.set_attribute("blip.outcome", "sent")
            await asyncio.to_thread(self.store.delivered, item.id, now)
            return
        # A webhook whose camera no longer has a URL can never be sent: dead at once.
        dead = now - item.created_at >= self.webhooks.give_up_after_s or (
            item.channel == "webhook" and item.url is None
        )
        span.set_attribute("blip.outcome", "dead" if dead else "retried")
        span.set_status(Status(StatusCode.ERROR, error))
        self.metrics.deliveries.labels("failed", item.channel).inc()  # every failed attempt; then retried or dead
        self.metrics.deliveries.labels("dead" if dead else "retried", item.channel).inc()
        log.warning(
            "delivery %s (%s by %s, attempt %d) failed: %s%s",
            item.id,
            item.kind,
            item.channel,
            item.attempts,
            error,
            " (dead)" if dead else "",
        )
        await asyncio.to_thread(
            self.store.retry_later, item.id, now + retry_delay(item.attempts, self.webhooks), error, dead=dead
        )

    async def _send(self, item: Claimed) -> str | None:
        """None on a 2xx; else what went wrong, in one line."""
        if item.url is None:
            return "the camera has no webhook_url"
        if self._session is None:
            raise RuntimeError("the worker is not running")
        try:
            target = parse_url(item.url, self.webhooks.allow_insecure)
            if _is_ip(target.host) and not address_allowed(target.host, self.webhooks.allow_insecure):
                raise WebhookRefused(f"{target.host} is an internal address")
        except WebhookRefused as error:
            return str(error)
        body = item.body.encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: item.id,
            SIGNATURE_HEADER: sign(item.secret, body, int(time.time())),
            "User-Agent": "blip-events-webhooks/1",
        }
        try:
            timeout = aiohttp.ClientTimeout(total=self.webhooks.timeout_s)
            async with self._session.post(
                item.url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            return f"{type(error).__name__}: {error}"[:300]


def _is_ip(host: str) -> bool:
    """aiohttp connects to an address literal without asking the resolver: such a URL is checked here."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False
