"""The durable store: SQLite embedded (one API process), PostgreSQL shared (several replicas), one code path.

- Every table is created and changed by Alembic (``migrate``), never by ``create_all``.
- A camera's frames are serialized: on PostgreSQL the frame's transaction holds the camera's row lock
  (``SELECT ... FOR UPDATE``) from the gate's read to the last write, inference included, so two replicas never
  interleave one camera; SQLite serves one process, whose service serializes each camera itself, and keeps its
  transactions short.
- The outbox is claimed with ``FOR UPDATE SKIP LOCKED`` and a lease: a worker that dies mid-send leaves the row
  to be claimed again when the lease ends (at least once, never lost).
- Tokens are kept only as a keyed SHA-256 (HMAC) of the 256-bit token: a fast hash is safe for random tokens, and
  a slow one would cost every frame. The key is ``BLIP_TOKEN_HASH_KEY``, else one made for the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, or_, select, update
from sqlalchemy.orm import Session

from blip_events.records import CameraState, EventView, WebhookBody, rfc3339
from blip_events.schema import Camera, Change, Delivery, Event, Meta
from blip_events.settings import CameraPatch, Channel

DEFAULT_URL = "sqlite:///blip-events.sqlite3"  # under the working directory: `make api` and `make demo` need nothing
MIGRATIONS = Path(str(resources.files("blip_events") / "migrations"))


def token_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """A camera's bearer token and webhook signing secret: in the reply to its creation or rotation, once."""

    token: str
    webhook_secret: str


@dataclass(frozen=True)
class CameraRecord:
    id: str
    patch: CameraPatch
    created_at: float


@dataclass(frozen=True)
class CameraRow:
    """What a frame reads of its camera's row."""

    id: str
    settings: dict[str, Any]
    state: dict[str, Any]
    token_hash: str
    previous_token_hash: str | None
    previous_token_expires_at: float | None
    thumbnail: bytes | None
    thumbnail_width: int | None
    thumbnail_height: int | None


CAMERA_ROW_FIELDS = tuple(field.name for field in dataclasses.fields(CameraRow))
# Every frame reads and writes its camera's row: the two statements are built once, and run on the session's
# connection, past the ORM's execution layer (they touch no ORM instance).
_CAMERAS = Camera.__table__
_LOAD_CAMERA = (
    select(*(_CAMERAS.c[name] for name in CAMERA_ROW_FIELDS))
    .where(_CAMERAS.c.id == bindparam("camera_id"))
    .with_for_update()
)
_SAVE_STATE = update(_CAMERAS).where(_CAMERAS.c.id == bindparam("camera_id")).values(state=bindparam("state"))
_SAVE_STATE_AND_THUMBNAIL = _SAVE_STATE.values(
    thumbnail=bindparam("thumbnail"),
    thumbnail_width=bindparam("thumbnail_width"),
    thumbnail_height=bindparam("thumbnail_height"),
)


@dataclass(frozen=True)
class Claimed:
    """An outbox row claimed for one attempt."""

    id: str
    camera_id: str
    kind: str
    body: str
    attempts: int
    created_at: float
    secret: str
    url: str | None
    channel: Channel = "webhook"


def event_view(row: Event) -> EventView:
    return EventView(
        id=row.id,
        camera_id=row.camera_id,
        behavior=row.behavior,
        question=row.question,
        state=row.state,  # type: ignore[arg-type]
        started_at=rfc3339(row.started_at) or "",
        ended_at=rfc3339(row.ended_at),
        peak_score=round(row.peak_score, 6),
        peak_at=rfc3339(row.peak_at) or "",
        frames_inferred=row.frames_inferred,
        frames_gated=row.frames_gated,
    )


class Store:
    """Every read and write of the event layer; the service and the worker call it from worker threads."""

    def __init__(self, url: str = DEFAULT_URL, *, pool_size: int = 20, token_key: str | None = None) -> None:
        self.url, self.pool_size = url, pool_size
        sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"future": True}
        if sqlite:
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            options |= {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
        self.engine: Engine = create_engine(url, **options)
        self.holds_row_locks = not sqlite
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._token_key = token_key.encode() if token_key else None
        # SQLite has no SKIP LOCKED and serves one process: its claims take turns on this lock instead.
        self._claiming = threading.Lock() if sqlite else contextlib.nullcontext()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        if self._token_key is None:
            self._token_key = self._stored_key().encode()

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _stored_key(self) -> str:
        with self.session() as session, session.begin():
            found = session.get(Meta, "token_hash_key")
            if found is None:
                found = Meta(key="token_hash_key", value=secrets.token_hex(32))
                session.add(found)
            return found.value

    def hash(self, token: str) -> str:
        if self._token_key is None:
            raise RuntimeError("the store is not migrated yet: call Store.migrate() before reading tokens")
        return token_hash(self._token_key, token)

    # ---- cameras -----------------------------------------------------------------------------------------------

    def put_camera(
        self, camera_id: str, patch: CameraPatch, *, rotate: bool, grace_s: float, now: float | None = None
    ) -> tuple[CameraRecord, bool, Credentials | None]:
        """Create the camera, or lay ``patch`` over its settings; a token (and secret) on creation or ``rotate``.
        Returns the record, whether it was created, and the new credentials if any."""
        now = time.time() if now is None else now
        with self.session() as session, session.begin():
            row = session.execute(select(Camera).where(Camera.id == camera_id).with_for_update()).scalar_one_or_none()
            created = row is None
            credentials = None
            if row is None:
                credentials = Credentials(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
                row = Camera(
                    id=camera_id,
                    settings=patch.model_dump(exclude_none=True),
                    token_hash=self.hash(credentials.token),
                    webhook_secret=credentials.webhook_secret,
                    state=CameraState().model_dump(),
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            else:
                row.settings = CameraPatch.model_validate(row.settings).merged(patch).model_dump(exclude_none=True)
                row.updated_at = now
                if rotate:
                    credentials = Credentials(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
                    row.previous_token_hash, row.previous_token_expires_at = row.token_hash, now + grace_s
                    row.token_hash, row.webhook_secret = self.hash(credentials.token), credentials.webhook_secret
            return CameraRecord(row.id, CameraPatch.model_validate(row.settings), row.created_at), created, credentials

    def get_camera(self, camera_id: str) -> CameraRecord | None:
        with self.session() as session:
            row = session.get(Camera, camera_id)
            return (
                None if row is None else CameraRecord(row.id, CameraPatch.model_validate(row.settings), row.created_at)
            )

    def delete_camera(self, camera_id: str) -> bool:
        """The camera, its events, its change log and its pending deliveries; False when there was none.

        The camera's row is locked first, as a frame locks it: a frame in flight finishes before its events go.
        Deleting the events first would lock rows that the frame then updates while it holds the camera, and
        PostgreSQL would abort one of the two as a deadlock."""
        with self.session() as session, session.begin():
            if session.execute(select(Camera.id).where(Camera.id == camera_id).with_for_update()).first() is None:
                return False
            for table in (Delivery, Change, Event):
                session.execute(delete(table).where(table.camera_id == camera_id))
            return session.execute(delete(Camera).where(Camera.id == camera_id)).rowcount > 0

    def token_owner(self, token: str, now: float | None = None) -> str | None:
        """The camera whose current token, or rotated-out token still in its grace period, this is."""
        now = time.time() if now is None else now
        digest = self.hash(token)
        with self.session() as session:
            rows = session.execute(
                select(
                    Camera.id, Camera.token_hash, Camera.previous_token_hash, Camera.previous_token_expires_at
                ).where(or_(Camera.token_hash == digest, Camera.previous_token_hash == digest))
            ).all()
        for camera_id, current, previous, expires in rows:
            if _opens(digest, current, previous, expires, now):
                return camera_id
        return None

    def opens(self, row: CameraRow, token: str, now: float | None = None) -> bool:
        """Whether ``token`` is this camera's (current, or rotated out and still in its grace period): the frame
        route's check against the row its transaction has just read, with no query of its own."""
        now = time.time() if now is None else now
        return _opens(self.hash(token), row.token_hash, row.previous_token_hash, row.previous_token_expires_at, now)

    # ---- frames ------------------------------------------------------------------------------------------------

    @contextmanager
    def frame(self, camera_id: str) -> Iterator[FrameTransaction]:
        """One frame's reads and writes of one camera; committed by ``commit``, rolled back otherwise."""
        session = self.session()
        try:
            yield FrameTransaction(self, session, camera_id)
        finally:
            if session.in_transaction():
                session.rollback()
            session.close()

    # ---- events ------------------------------------------------------------------------------------------------

    def list_events(
        self, camera_id: str, *, since: float | None, behavior: str | None, limit: int, cursor: tuple[float, str] | None
    ) -> tuple[list[EventView], tuple[float, str] | None]:
        """Newest first; ``cursor`` is the (started_at, id) of the last event of the previous page."""
        query = select(Event).where(Event.camera_id == camera_id)
        if since is not None:
            query = query.where(Event.started_at >= since)
        if behavior is not None:
            query = query.where(Event.behavior == behavior)
        if cursor is not None:
            started, last_id = cursor
            query = query.where(or_(Event.started_at < started, (Event.started_at == started) & (Event.id < last_id)))
        query = query.order_by(Event.started_at.desc(), Event.id.desc()).limit(limit + 1)
        with self.session() as session:
            rows = list(session.execute(query).scalars())
        page = rows[:limit]
        following = (page[-1].started_at, page[-1].id) if len(rows) > limit else None
        return [event_view(row) for row in page], following

    def keyframe(self, camera_id: str, event_id: str) -> bytes | None:
        with self.session() as session:
            row = session.get(Event, event_id)
            return row.keyframe if row is not None and row.camera_id == camera_id else None

    def has_event(self, camera_id: str, event_id: str) -> bool:
        with self.session() as session:
            row = session.get(Event, event_id)
            return row is not None and row.camera_id == camera_id

    def changes_after(self, camera_id: str, seq: int, limit: int = 100) -> list[tuple[int, str, str]]:
        """(seq, kind, body) of the camera's changes after ``seq``, oldest first."""
        with self.session() as session:
            rows = session.execute(
                select(Change.seq, Change.kind, Change.body)
                .where(Change.camera_id == camera_id, Change.seq > seq)
                .order_by(Change.seq)
                .limit(limit)
            ).all()
        return [(int(s), k, b) for s, k, b in rows]

    def last_change(self, camera_id: str) -> int:
        with self.session() as session:
            return int(session.execute(select(func.max(Change.seq)).where(Change.camera_id == camera_id)).scalar() or 0)

    def purge(self, before: float) -> int:
        """Ended events that started before ``before``, with their change-log rows and finished deliveries."""
        with self.session() as session, session.begin():
            old = select(Event.id).where(Event.state == "ended", Event.started_at < before)
            session.execute(delete(Delivery).where(Delivery.event_id.in_(old), Delivery.state != "pending"))
            session.execute(delete(Change).where(Change.at < before))
            return session.execute(delete(Event).where(Event.state == "ended", Event.started_at < before)).rowcount

    # ---- the outbox --------------------------------------------------------------------------------------------

    def claim_due(
        self, now: float, limit: int, lease_s: float, channels: tuple[Channel, ...] = ("webhook", "mqtt")
    ) -> list[Claimed]:
        """Pending deliveries on ``channels`` due by ``now``, each leased for ``lease_s`` (its next attempt moved
        past the lease), skipping rows another worker holds. A worker claims only the channels it can send: a
        replica without ``[mqtt]`` leaves MQTT deliveries to one with it (they wait, and the outbox age shows it)."""
        with self._claiming, self.session() as session, session.begin():
            rows = list(
                session.execute(
                    select(Delivery)
                    .where(Delivery.state == "pending", Delivery.next_attempt_at <= now, Delivery.channel.in_(channels))
                    .order_by(Delivery.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            cameras = {
                row.id: row
                for row in session.execute(select(Camera).where(Camera.id.in_({r.camera_id for r in rows}))).scalars()
            }
            claimed = []
            for row in rows:
                row.next_attempt_at, row.attempts = now + lease_s, row.attempts + 1
                camera = cameras.get(row.camera_id)
                url = CameraPatch.model_validate(camera.settings).webhook_url if camera else None
                secret = camera.webhook_secret if camera else ""
                claimed.append(
                    Claimed(
                        row.id,
                        row.camera_id,
                        row.kind,
                        row.body,
                        row.attempts,
                        row.created_at,
                        secret,
                        url,
                        row.channel,  # type: ignore[arg-type]
                    )
                )
            return claimed

    def delivered(self, delivery_id: str, now: float) -> None:
        with self.session() as session, session.begin():
            row = session.get(Delivery, delivery_id)
            if row is not None:
                row.state, row.sent_at, row.last_error = "sent", now, None

    def retry_later(self, delivery_id: str, at: float, error: str, *, dead: bool = False) -> None:
        with self.session() as session, session.begin():
            row = session.get(Delivery, delivery_id)
            if row is not None:
                row.last_error = error[:2000]
                if dead:
                    row.state = "dead"
                else:
                    row.next_attempt_at = at

    def deliveries(self, state: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.session() as session:
            rows = session.execute(
                select(Delivery).where(Delivery.state == state).order_by(Delivery.created_at).limit(limit)
            ).scalars()
            return [
                {
                    "id": r.id,
                    "camera_id": r.camera_id,
                    "event_id": r.event_id,
                    "kind": r.kind,
                    "channel": r.channel,
                    "state": r.state,
                    "attempts": r.attempts,
                    "created_at": rfc3339(r.created_at),
                    "next_attempt_at": rfc3339(r.next_attempt_at) if r.state == "pending" else None,
                    "sent_at": rfc3339(r.sent_at),
                    "last_error": r.last_error,
                }
                for r in rows
            ]

    def oldest_pending(self) -> float | None:
        """Creation time of the oldest delivery not yet sent."""
        with self.session() as session:
            return session.execute(select(func.min(Delivery.created_at)).where(Delivery.state == "pending")).scalar()


class FrameTransaction:
    """One frame of one camera: ``load`` (row-locked on PostgreSQL), then writes, then ``commit``."""

    def __init__(self, store: Store, session: Session, camera_id: str) -> None:
        self.store, self.session, self.camera_id = store, session, camera_id
        # Where this camera's event changes are delivered: its webhook_url, the [mqtt] broker; none, no outbox row.
        self.channels: tuple[Channel, ...] = ("webhook",)

    def load(self) -> CameraRow | None:
        """The camera's row, locked on PostgreSQL; read as a plain row (no ORM instance: the frame writes it back
        with ``save_camera``)."""
        found = self.session.connection().execute(_LOAD_CAMERA, {"camera_id": self.camera_id}).one_or_none()
        return None if found is None else CameraRow(*found)

    def pause(self) -> None:
        """Before the frame waits on the fleet: SQLite ends its read transaction (nothing is held across the
        inference), PostgreSQL keeps the row lock to the last write. A gated frame never pauses: one transaction."""
        if not self.store.holds_row_locks:
            self.session.commit()

    def save_camera(self, state: dict[str, Any], thumbnail: tuple[bytes, int, int] | None) -> None:
        """The camera's state (and the new baseline thumbnail of an inferred frame) as one UPDATE, without the
        ORM's change tracking of the row: every frame writes it, most frames write nothing else."""
        values: dict[str, Any] = {"camera_id": self.camera_id, "state": state}
        if thumbnail is not None:
            values["thumbnail"], values["thumbnail_width"], values["thumbnail_height"] = thumbnail
        statement = _SAVE_STATE if thumbnail is None else _SAVE_STATE_AND_THUMBNAIL
        self.session.connection().execute(statement, values)

    def event(self, event_id: str) -> Event | None:
        return self.session.get(Event, event_id)

    def new_event(self, **fields: Any) -> Event:
        row = Event(id=str(uuid.uuid4()), **fields)
        self.session.add(row)
        return row

    def outbox(self, kind: str, view: EventView, now: float) -> list[str]:
        """A delivery of ``kind`` for the event on each of the camera's channels, in this frame's transaction; each
        id is its delivery's idempotency key."""
        ids = []
        for channel in self.channels:
            delivery_id = str(uuid.uuid4())
            body = WebhookBody(delivery_id=delivery_id, kind=kind, camera_id=view.camera_id, event=view)  # type: ignore[arg-type]
            self.session.add(
                Delivery(
                    id=delivery_id,
                    camera_id=view.camera_id,
                    event_id=view.id,
                    kind=kind,
                    channel=channel,
                    body=body.model_dump_json(),
                    state="pending",
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            ids.append(delivery_id)
        return ids

    def change(self, kind: str, view: EventView, now: float) -> None:
        self.session.add(Change(camera_id=view.camera_id, kind=kind, body=view.model_dump_json(), at=now))

    def flush(self) -> None:
        self.session.flush()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def _opens(digest: str, current: str, previous: str | None, expires: float | None, now: float) -> bool:
    """The token rule, in constant time: the current hash, or the previous one before its grace period ends."""
    if hmac.compare_digest(current, digest):
        return True
    if not previous or expires is None:
        return False
    return hmac.compare_digest(previous, digest) and now < expires


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL: a commit survives the process being killed (SIGKILL, OOM), not a power cut of the host; no
    # fsync per frame. Several replicas and host failures are PostgreSQL's job.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
