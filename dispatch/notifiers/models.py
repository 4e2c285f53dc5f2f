from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class NotificationStatus(StrEnum):
    PENDING = "pending"
    NOTIFIED = "notified"
    FAILED = "failed"
    # Given up before its last attempt: the leader answered or was disabled, the incident
    # closed, or the channel was switched off (a restart without its setting).
    STOPPED = "stopped"


class Notification(Base):
    """One leader to be reached over one channel about one unacknowledged alert."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_dispatch", "dispatch_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    dispatch_id: Mapped[str] = mapped_column(ForeignKey("dispatches.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # Why it was begun later than its alert's check fell due (the leader's phone was given
    # time to reconnect after a restart), or None.
    held: Mapped[str | None] = mapped_column(Text, default=None)
    # Until when it was held: the end of the leader's reconnection grace, by the server's
    # clock (UTC), or None (not held, or held before this was recorded).
    held_until: Mapped[datetime | None] = mapped_column(default=None)


class NotificationAttempt(Base):
    """Every try, kept: when, what the receiver answered, or why it could not be reached."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int]
    at: Mapped[datetime]
    ok: Mapped[bool]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float]
