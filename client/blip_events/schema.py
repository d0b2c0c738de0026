"""The store's tables (SQLAlchemy 2 declarative). ``migrations/`` creates and changes them; a test holds that the
migrations and these models agree on both engines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Camera(Base):
    """A camera: its own settings, its credentials (the token only as a keyed hash), and its state between frames.
    Frames of one camera lock this row (``SELECT ... FOR UPDATE`` on PostgreSQL)."""

    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    previous_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    previous_token_expires_at: Mapped[float | None] = mapped_column(Float)
    webhook_secret: Mapped[str] = mapped_column(String(128))
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)
    thumbnail_width: Mapped[int | None] = mapped_column(Integer)
    thumbnail_height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_camera_started", "camera_id", "started_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    behavior: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    peak_score: Mapped[float] = mapped_column(Float)
    peak_at: Mapped[float] = mapped_column(Float)
    frames_inferred: Mapped[int] = mapped_column(Integer)
    frames_gated: Mapped[int] = mapped_column(Integer)
    keyframe: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[float] = mapped_column(Float)


class Delivery(Base):
    """The outbox: a notification to send (to the camera's webhook, or to the MQTT broker), written in the same
    transaction as the event change it tells of."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(8), server_default="webhook")  # webhook | mqtt
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8))  # pending | sent | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)


class Change(Base):
    """Every event change in order, per camera: what the Server-Sent Events stream replays from its Last-Event-ID."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_camera_seq", "camera_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class Meta(Base):
    """Store-wide values: the token-hash key where none is configured."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
