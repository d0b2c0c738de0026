"""MQTT delivery end to end (``blip_events.mqtt``): the API tier in process, its router on a real Triton (one
layout: delivery does not depend on it), the event store on SQLite, a real mosquitto on loopback, and a real Paho subscriber with a persistent
session. Each event's ``started`` and ``ended`` reach the camera's topic, acknowledged by the broker before the
outbox marks them sent; while the broker is down nothing is lost: the deliveries wait and go once it is back."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from blip_api.app import create_app
from blip_api.settings import ApiSettings, SettingsError
from blip_bench.frames import SAMPLE
from blip_bench.mosquitto import mosquitto_broker
from blip_events.records import WebhookBody
from blip_events.schema import Delivery
from blip_images.clips import static_noise
from tests.integration.test_cameras import ADMIN, camera, post

LOW, HIGH = {"barking": {"enter": 0.001, "exit": 0.001}}, {"barking": {"enter": 0.9999, "exit": 0.9999}}


@pytest.fixture
def broker():
    with mosquitto_broker() as running:
        yield running


class Subscriber:
    """A Paho client with a persistent session (clean_session off, QoS 1): what the broker queues for it while
    either side is away reaches it once both are back."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, WebhookBody]] = []
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="blip-test-subscriber", clean_session=False)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_disconnect = lambda *_: self.subscribed.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber never subscribed"

    def _on_message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, WebhookBody.model_validate_json(message.payload)))

    def kinds(self) -> list[str]:
        """The kinds received, one per delivery: a message published again (at least once) carries its delivery id."""
        with self.lock:
            return sorted({body.delivery_id: body.kind for _, body in self.messages}.values())

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.kinds()) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker):
    """Subscribed to every camera's events under the tests' prefix before the test posts a frame."""
    client = Subscriber(broker.port, "home/blip/cameras/+/events")
    yield client
    client.close()


def watched(api, camera_id: str) -> dict[str, str]:
    """A camera whose every score starts an event (random weights), ending a second after its threshold is raised."""
    return camera(api, camera_id, behaviors=LOW, events={"cutoff_s": 1, "cooldown_s": 0}, gate={"max_age_s": 0.5})


def mqtt_app(triton_url: str, tmp_path, broker_url: str, timeout_s: float = 2.0, poll_interval_s: float = 0.1):
    settings = ApiSettings.from_dict(
        {
            "router": {"probe_interval_s": 60.0, "request_timeout_s": 20.0},
            "backends": {"fleet": {"url": triton_url}},
            "webhooks": {"first_retry_s": 0.5, "poll_interval_s": poll_interval_s},
            "mqtt": {"url": broker_url, "topic_prefix": "home/blip", "timeout_s": timeout_s},
        },
        env={
            "BLIP_API_TOKEN": "frames-token",
            "BLIP_API_ADMIN_TOKEN": "admin-token",
            "BLIP_DB_URL": f"sqlite:///{tmp_path / 'events.sqlite3'}",
        },
    )
    return create_app(settings)


def one_event(api, camera_id: str, token: dict[str, str], start: float) -> str:
    """Frames that start an event, the owner's threshold raised live, frames that end it: the event's id."""
    frames = static_noise(SAMPLE, seconds=5).frames
    outcomes = [post(api, camera_id, token, frames[i], start + i * 0.5).json() for i in range(4)]
    api.put(f"/admin/cameras/{camera_id}", json={"behaviors": HIGH}, headers=ADMIN).raise_for_status()
    outcomes += [post(api, camera_id, token, frames[i], start + i * 0.5).json() for i in range(4, 10)]
    kinds = [(c["kind"], c["event"]["id"]) for o in outcomes for c in o["events"] if c["kind"] != "updated"]
    assert [k for k, _ in kinds] == ["started", "ended"], outcomes
    return kinds[0][1]


def deliveries(api, camera_id: str) -> list[Delivery]:
    store = api.app.state.blip.cameras.store
    with store.session() as session:
        return list(session.execute(select(Delivery).where(Delivery.camera_id == camera_id)).scalars())


def settled(api, camera_id: str, timeout_s: float = 10.0) -> list[Delivery]:
    """The camera's deliveries once none is pending, or as they stand at the deadline. The subscriber can hold a
    message before the publisher has the broker's PUBACK and marks its row sent, so a test waits on the row too."""
    deadline = time.monotonic() + timeout_s
    rows = deliveries(api, camera_id)
    while any(r.state == "pending" for r in rows) and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = deliveries(api, camera_id)
    return rows


def test_events_are_published_to_the_camera_topic_once_the_broker_acknowledges(
    colocated_fleet, tmp_path, broker, subscriber
) -> None:
    with TestClient(mqtt_app(colocated_fleet.http_url, tmp_path, broker.url)) as api:
        event_id = one_event(api, "cam-mqtt", watched(api, "cam-mqtt"), time.time() - 100)
        subscriber.wait_for(2)
        assert subscriber.kinds() == ["ended", "started"]
        rows = settled(api, "cam-mqtt")
        # No webhook_url: the broker is this camera's one channel, and each delivery is marked sent.
        assert {(r.channel, r.state) for r in rows} == {("mqtt", "sent")} and len(rows) == 2
        listed = api.get("/admin/deliveries", params={"state": "sent"}, headers=ADMIN).json()
        assert {d["channel"] for d in listed["deliveries"]} == {"mqtt"}
    for topic, body in subscriber.messages:
        assert topic == "home/blip/cameras/cam-mqtt/events"
        assert body.camera_id == "cam-mqtt" and body.event.id == event_id
    assert {body.delivery_id for _, body in subscriber.messages} == {r.id for r in rows}


def test_a_camera_turns_its_mqtt_off_and_on_without_a_restart(colocated_fleet, tmp_path, broker, subscriber) -> None:
    with TestClient(mqtt_app(colocated_fleet.http_url, tmp_path, broker.url)) as api:
        token = watched(api, "cam-quiet")
        assert api.put("/admin/cameras/cam-quiet", json={"mqtt": False}, headers=ADMIN).json()["mqtt"] is False
        start = time.time() - 100
        one_event(api, "cam-quiet", token, start)
        # No webhook_url and MQTT off: no channel, so the event's changes write no outbox row at all.
        assert deliveries(api, "cam-quiet") == []
        reply = api.put("/admin/cameras/cam-quiet", json={"mqtt": True, "behaviors": LOW}, headers=ADMIN).json()
        assert reply["mqtt"] is True and reply["gate"]["max_age_s"] == 0.5, "the other keys are kept"
        event_id = one_event(api, "cam-quiet", token, start + 30)
        subscriber.wait_for(2)
        assert subscriber.kinds() == ["ended", "started"]
        assert {body.event.id for _, body in subscriber.messages} == {event_id}, "only the event after it was on"
        assert {(r.channel, r.state) for r in settled(api, "cam-quiet")} == {("mqtt", "sent")}


def test_a_broker_that_is_down_loses_nothing(colocated_fleet, tmp_path, broker, subscriber) -> None:
    with TestClient(mqtt_app(colocated_fleet.http_url, tmp_path, broker.url)) as api:
        token = watched(api, "cam-down")
        broker.stop()
        one_event(api, "cam-down", token, time.time() - 100)
        time.sleep(1.5)  # a few attempts, each refused
        waiting = deliveries(api, "cam-down")
        assert len(waiting) == 2 and {r.state for r in waiting} == {"pending"}
        assert all(r.attempts >= 1 and "MQTT" in (r.last_error or "") for r in waiting), [
            (r.attempts, r.last_error) for r in waiting
        ]
        broker.start()
        subscriber.wait_for(2, timeout_s=30)
        assert subscriber.kinds() == ["ended", "started"]
        assert {r.state for r in settled(api, "cam-down")} == {"sent"}


def test_a_broker_that_hangs_holds_no_frame(colocated_fleet, tmp_path, broker, subscriber) -> None:
    """Publishes waiting on an acknowledgement that does not come wait in the publisher's own threads: the frames'
    store hops (the event loop's default pool) go on."""
    # The worker looks for due deliveries every 3 s here, so that it claims the 8 events' deliveries in one batch.
    with TestClient(
        mqtt_app(colocated_fleet.http_url, tmp_path, broker.url, timeout_s=8.0, poll_interval_s=3.0)
    ) as api:
        cameras = {f"cam-hang-{i}": watched(api, f"cam-hang-{i}") for i in range(8)}
        frames, start = static_noise(SAMPLE, seconds=10).frames, time.time() - 100
        broker.pause()
        for camera_id, token in cameras.items():  # 8 events start: 8 publishes will wait on the hung broker
            for i in range(4):
                post(api, camera_id, token, frames[i], start + i * 0.5).raise_for_status()
        claimed = [r for c in cameras for r in deliveries(api, c) if r.attempts]
        deadline = time.monotonic() + 10
        while len(claimed) < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
            claimed = [r for c in cameras for r in deliveries(api, c) if r.attempts]
        assert len(claimed) == 8, "the worker claimed the 8 deliveries: their publishes wait"
        camera_id, token = next(iter(cameras.items()))
        for i in range(4, 12):
            began = time.monotonic()
            post(api, camera_id, token, frames[i], start + i * 0.5).raise_for_status()
            took = time.monotonic() - began
            assert took < 4.0, f"frame {i} waited {took:.1f} s behind the hung broker's publishes"
        broker.resume()
        subscriber.wait_for(8, timeout_s=30)
        assert subscriber.kinds() == ["started"] * 8


@pytest.mark.parametrize(
    ("mqtt", "named"),
    [
        ({"url": "http://broker:1883"}, "is not mqtt://host[:port]"),
        ({"url": "mqtt://user:secret@broker"}, "carries credentials"),
        ({"url": "mqtt://broker/path"}, "has a path"),
        ({"url": "mqtt://broker:99999"}, "mqtt.url"),
        ({"url": "mqtt://broker", "topic_prefix": "home/#"}, "topic levels without"),
        ({"url": "mqtt://broker", "topic_prefix": "/blip"}, "topic levels without"),
        ({"url": "mqtt://broker", "qos": 0}, "qos"),
        ({"url": "mqtt://broker", "tls": True}, "tls"),
    ],
)
def test_a_bad_mqtt_setting_is_refused_naming_it(mqtt, named) -> None:
    with pytest.raises(SettingsError, match="mqtt") as refused:
        ApiSettings.from_dict(
            {"backends": {"fleet": {"url": "127.0.0.1:1"}}, "mqtt": mqtt}, env={"BLIP_API_TOKEN": "t"}
        )
    assert named in str(refused.value)
