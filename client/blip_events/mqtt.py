"""MQTT delivery: a camera's ``started`` and ``ended`` published to ``[mqtt]``'s broker (unless the camera's own
``mqtt`` setting is off), as Frigate publishes its events, for subscribers such as a home-automation hub or a
mobile push service.

One connection per API process, kept up by Paho's network thread (it reconnects with backoff after a broker
restart). A delivery counts as sent when the broker acknowledges it (PUBACK at QoS 1, PUBCOMP at QoS 2); anything
else, a broker that is down included, is a failed attempt that the outbox retries. Delivery is at least once, like
the webhooks': a message the broker received but whose acknowledgement was lost is published again, with the same
``delivery_id`` in its body. Messages are not retained: a subscriber that was away reads the event list.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from blip_events.settings import MqttSection

log = logging.getLogger(__name__)


class MqttPublisher:
    """``publish`` waits until the broker acknowledges the message or ``timeout_s`` passes. ``close`` ends the
    connection."""

    def __init__(self, section: MqttSection, password: str | None = None, concurrency: int = 32) -> None:
        """``concurrency``: publishes awaiting their acknowledgement at once (the worker's claim batch). They wait in
        threads of their own: a slow broker must not hold the event loop's default pool, which every frame's store
        hop uses."""
        host, port, tls = section.broker
        self.section = section
        self._connected = threading.Event()
        self._waiting = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="mqtt-publish")
        client_id = section.client_id or f"blip-api-{socket.gethostname()}-{os.getpid()}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if section.username is not None:
            self.client.username_pw_set(section.username, password)
        if tls:
            self.client.tls_set()  # the system's CAs, hostname checked
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.where = f"{host}:{port}"
        self.client.connect_async(host, port, keepalive=section.keepalive_s)
        self.client.loop_start()

    def _on_connect(
        self, _client: paho.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s refused the connection: %s", self.where, reason)
            return
        log.info("MQTT broker %s connected", self.where)
        self._connected.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker %s disconnected: %s", self.where, reason)
        self._connected.clear()

    async def publish(self, camera_id: str, body: str) -> str | None:
        """None once the broker has acknowledged ``body`` on the camera's topic; else what went wrong, in one line."""
        return await asyncio.get_running_loop().run_in_executor(self._waiting, self._publish, camera_id, body)

    def _publish(self, camera_id: str, body: str) -> str | None:
        if not self._connected.is_set():
            return f"MQTT broker {self.where} is not connected"
        info = self.client.publish(self.section.topic(camera_id), body.encode(), qos=self.section.qos, retain=False)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            return f"MQTT publish failed: {paho.error_string(info.rc)}"
        try:
            info.wait_for_publish(self.section.timeout_s)
        except (RuntimeError, ValueError) as error:
            return f"MQTT publish failed: {error}"
        if not info.is_published():
            return f"MQTT broker {self.where} did not acknowledge within {self.section.timeout_s:g} s"
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._waiting.shutdown(wait=False, cancel_futures=True)
