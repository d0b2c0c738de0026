"""blip_events.store on both engines: SQLite (embedded) and a real PostgreSQL server (tests/postgres.py).

Migrations match the models; tokens are kept only as keyed hashes; a rotated token keeps working for its grace
period; deleting a camera deletes its events and deliveries; a camera's frame transactions serialize across
connections on PostgreSQL (``FOR UPDATE``); concurrent outbox claims never share a row (``SKIP LOCKED``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from blip_events.records import EventView, WebhookBody
from blip_events.schema import Base, Camera, Delivery, Event
from blip_events.settings import CameraPatch, GatePatch
from blip_events.store import MIGRATIONS, FrameTransaction, Store, event_view


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = Store(url, pool_size=4)
    made.migrate()
    yield made
    with made.engine.begin() as connection:  # the server is the session's: leave it empty for the next test
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    made.close()


def test_the_migrations_create_exactly_the_models_tables_and_run_twice(store) -> None:
    store.migrate()  # at head already: nothing to do
    with store.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        tables = set(inspect(connection).get_table_names())
    assert diffs == [], diffs
    assert {"cameras", "events", "deliveries", "changes", "meta", "alembic_version"} <= tables


def _migrate(store: Store, to: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, to)


def test_a_delivery_from_before_channels_is_a_webhook_after_the_migration(store) -> None:
    store.put_camera("cam-1", CameraPatch(webhook_url="https://a.example/h"), rotate=False, grace_s=1)
    _migrate(store, "0001", down=True)
    with store.engine.begin() as connection:
        assert "channel" not in {c["name"] for c in inspect(connection).get_columns("deliveries")}
        connection.execute(
            text(
                "INSERT INTO deliveries (id, camera_id, event_id, kind, body, state, attempts, created_at,"
                " next_attempt_at) VALUES ('d-1', 'cam-1', 'e-1', 'started', '{}', 'pending', 0, 1.0, 1.0)"
            )
        )
    _migrate(store, "head")
    (claimed,) = store.claim_due(2.0, 10, lease_s=30)
    assert (claimed.id, claimed.channel, claimed.url) == ("d-1", "webhook", "https://a.example/h")


def test_a_camera_keeps_only_a_keyed_hash_of_its_token(store) -> None:
    _, created, credentials = store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=60)
    assert created and credentials is not None and len(credentials.token) >= 43, "256 random bits, base64"
    with store.session() as session:
        row = session.get(Camera, "cam-1")
        assert credentials.token not in (row.token_hash, row.previous_token_hash)
        assert row.token_hash == store.hash(credentials.token) and len(row.token_hash) == 64
    assert store.token_owner(credentials.token) == "cam-1"
    assert store.token_owner(credentials.token + "x") is None


def test_a_rotated_token_works_for_its_grace_period_only(store) -> None:
    _, _, first = store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=60, now=1000.0)
    _, created, second = store.put_camera("cam-1", CameraPatch(), rotate=True, grace_s=60, now=1000.0)
    assert not created and second is not None and second.token != first.token
    assert second.webhook_secret != first.webhook_secret
    assert store.token_owner(first.token, now=1059.0) == "cam-1"
    assert store.token_owner(first.token, now=1060.0) is None
    assert store.token_owner(second.token, now=5000.0) == "cam-1"
    _, _, none = store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=60)
    assert none is None, "an update without rotate_token gives no credentials"


def test_a_later_put_replaces_only_the_keys_it_names(store) -> None:
    store.put_camera(
        "cam-1", CameraPatch(gate=GatePatch(max_age_s=5), webhook_url="https://a.example/h"), rotate=False, grace_s=1
    )
    record, _, _ = store.put_camera("cam-1", CameraPatch(gate=GatePatch(budget_per_minute=10)), rotate=False, grace_s=1)
    assert record.patch.gate == GatePatch(max_age_s=5, budget_per_minute=10)
    assert record.patch.webhook_url == "https://a.example/h"


def _event(txn, camera_id: str, at: float, behavior: str = "barking"):
    return txn.new_event(
        camera_id=camera_id,
        behavior=behavior,
        question="Is the dog barking?",
        state="active",
        started_at=at,
        ended_at=None,
        peak_score=0.9,
        peak_at=at,
        frames_inferred=1,
        frames_gated=0,
        keyframe=b"jpeg",
        updated_at=at,
    )


def _view(row: Event) -> EventView:
    return event_view(row)


@contextlib.contextmanager
def _frame_with_event(store: Store, camera_id: str = "cam-1") -> Iterator[tuple[FrameTransaction, Event]]:
    """A camera with a webhook_url, and a frame's transaction holding one new event: what the outbox tests write to."""
    store.put_camera(camera_id, CameraPatch(webhook_url="https://a.example/h"), rotate=False, grace_s=1)
    with store.frame(camera_id) as txn:
        txn.load()
        row = _event(txn, camera_id, 100.0)
        txn.flush()
        yield txn, row


def test_deleting_a_camera_deletes_its_events_changes_and_deliveries(store) -> None:
    for camera in ("cam-1", "cam-2"):
        store.put_camera(camera, CameraPatch(), rotate=False, grace_s=1)
        with store.frame(camera) as txn:
            txn.load()
            row = _event(txn, camera, 100.0)
            txn.flush()
            txn.outbox("started", _view(row), 100.0)
            txn.change("started", _view(row), 100.0)
            txn.commit()
    assert store.delete_camera("cam-1") and not store.delete_camera("cam-1")
    assert store.get_camera("cam-1") is None
    with store.session() as session:
        assert {r.camera_id for r in session.execute(select(Event)).scalars()} == {"cam-2"}
        assert {r.camera_id for r in session.execute(select(Delivery)).scalars()} == {"cam-2"}
    assert store.changes_after("cam-1", 0) == [] and len(store.changes_after("cam-2", 0)) == 1


def test_events_page_newest_first_with_a_cursor_and_filters(store) -> None:
    store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=1)
    with store.frame("cam-1") as txn:
        txn.load()
        for index in range(7):
            _event(txn, "cam-1", 100.0 + index, "barking" if index % 2 else "eating")
        txn.commit()
    first, cursor = store.list_events("cam-1", since=None, behavior=None, limit=3, cursor=None)
    second, cursor2 = store.list_events("cam-1", since=None, behavior=None, limit=3, cursor=cursor)
    third, cursor3 = store.list_events("cam-1", since=None, behavior=None, limit=3, cursor=cursor2)
    times = [e.started_at for e in first + second + third]
    assert len(times) == 7 and times == sorted(times, reverse=True) and cursor3 is None
    barking, _ = store.list_events("cam-1", since=None, behavior="barking", limit=10, cursor=None)
    assert len(barking) == 3 and {e.behavior for e in barking} == {"barking"}
    recent, _ = store.list_events("cam-1", since=105.0, behavior=None, limit=10, cursor=None)
    assert len(recent) == 2


def test_a_cameras_frames_serialize_on_its_row_lock(store) -> None:
    """Two frame transactions of one camera at once: the second waits for the first's commit (PostgreSQL); SQLite
    leaves that to the service's per-camera lock, within its single process."""
    if not store.holds_row_locks:
        pytest.skip("SQLite serves one process; the service's per-camera lock serializes its frames")
    store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=1)
    order: list[str] = []
    first_loaded = threading.Event()

    def first() -> None:
        with store.frame("cam-1") as txn:
            txn.load()
            first_loaded.set()
            time.sleep(0.5)  # an inference, with the row locked
            order.append("first commits")
            txn.commit()

    def second() -> None:
        first_loaded.wait(5)
        with store.frame("cam-1") as txn:
            txn.load()
            order.append("second loads")
            txn.commit()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["first commits", "second loads"]


def test_deleting_a_camera_waits_for_its_frame_and_never_deadlocks_with_it(store) -> None:
    """A frame holds its camera's row across an inference, then updates the camera's open event; a delete of that
    camera meanwhile takes the row first, so it waits for the frame's commit. Had it deleted the events first, each
    would wait for the other, and PostgreSQL would abort one of them (a 500 to the camera or to the admin)."""
    if not store.holds_row_locks:
        pytest.skip("SQLite serves one process; its writes take turns on the database lock")
    store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=1)
    with store.frame("cam-1") as txn:
        txn.load()
        event_id = _event(txn, "cam-1", 100.0).id
        txn.commit()
    loaded, errors, deleted = threading.Event(), [], []

    def frame() -> None:
        try:
            with store.frame("cam-1") as txn:
                txn.load()
                loaded.set()
                time.sleep(0.5)  # the inference; the delete arrives meanwhile
                found = txn.event(event_id)
                assert found is not None
                found.frames_inferred += 1
                txn.commit()
        except Exception as error:  # the test's verdict: a frame aborted by the database
            errors.append(error)

    def remove() -> None:
        loaded.wait(5)
        try:
            deleted.append(store.delete_camera("cam-1"))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=frame), threading.Thread(target=remove)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert errors == [] and deleted == [True]
    assert store.get_camera("cam-1") is None and not store.has_event("cam-1", event_id)


def test_concurrent_claims_never_share_a_delivery_and_a_lease_hides_a_claimed_one(store) -> None:
    with _frame_with_event(store) as (txn, row):
        for _ in range(40):
            txn.outbox("started", _view(row), 100.0)
        txn.commit()
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        claimed.append([c.id for c in store.claim_due(200.0, 15, lease_s=60)])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    every = [delivery for batch in claimed for delivery in batch]
    assert len(every) == len(set(every)), "a delivery claimed twice"
    if store.holds_row_locks:
        assert len(every) == 40, "SKIP LOCKED: the claims share the 40 between them"
    assert store.claim_due(259.0, 100, lease_s=60) == [], "leased: not due again before the lease ends"
    assert len(store.claim_due(261.0, 100, lease_s=60)) == len(every), "a dead worker's rows come back"


def test_a_delivery_is_sent_retried_or_dead(store) -> None:
    with _frame_with_event(store) as (txn, row):
        ids = [id_ for kind in ("started", "ended", "started") for id_ in txn.outbox(kind, _view(row), 100.0)]
        txn.commit()
    assert store.oldest_pending() == 100.0
    (a, b, c) = sorted(store.claim_due(100.0, 10, lease_s=30), key=lambda d: ids.index(d.id))
    assert (a.url, a.attempts, a.channel) == ("https://a.example/h", 1, "webhook") and a.secret
    store.delivered(a.id, 101.0)
    store.retry_later(b.id, 103.0, "HTTP 500")
    store.retry_later(c.id, 0.0, "HTTP 500", dead=True)
    assert [d["id"] for d in store.deliveries("dead")] == [c.id]
    assert [d["id"] for d in store.deliveries("sent")] == [a.id]
    (again,) = store.claim_due(103.0, 10, lease_s=30)
    assert again.id == b.id and again.attempts == 2


def test_each_channel_gets_its_own_delivery_of_one_change(store) -> None:
    with _frame_with_event(store) as (txn, row):
        txn.channels = ("webhook", "mqtt")
        webhook_id, mqtt_id = txn.outbox("started", _view(row), 100.0)
        txn.channels = ()
        assert txn.outbox("ended", _view(row), 100.0) == [], "no channel, no outbox row"
        txn.commit()
    (webhook_only,) = store.claim_due(100.0, 10, lease_s=30, channels=("webhook",))
    assert webhook_only.id == webhook_id, "a worker without [mqtt] leaves the MQTT delivery to one that has it"
    claimed = {d.channel: d for d in store.claim_due(200.0, 10, lease_s=30)}
    assert (claimed["webhook"].id, claimed["mqtt"].id) == (webhook_id, mqtt_id)
    bodies = {channel: WebhookBody.model_validate_json(d.body) for channel, d in claimed.items()}
    assert {channel: b.delivery_id for channel, b in bodies.items()} == {"webhook": webhook_id, "mqtt": mqtt_id}
    assert bodies["webhook"].event == bodies["mqtt"].event == _view(row)
    assert {d["channel"] for d in store.deliveries("pending")} == {"webhook", "mqtt"}


def test_retention_deletes_old_ended_events_only(store) -> None:
    store.put_camera("cam-1", CameraPatch(), rotate=False, grace_s=1)
    with store.frame("cam-1") as txn:
        txn.load()
        old, fresh, open_ = _event(txn, "cam-1", 100.0), _event(txn, "cam-1", 5000.0), _event(txn, "cam-1", 50.0)
        old.state = fresh.state = "ended"
        txn.commit()
    assert store.purge(before=1000.0) == 1
    left, _ = store.list_events("cam-1", since=None, behavior=None, limit=10, cursor=None)
    assert {e.id for e in left} == {fresh.id, open_.id}, "an active event stays whatever its age"
