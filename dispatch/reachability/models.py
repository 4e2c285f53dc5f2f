from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class Presence(Base):
    """A user's sockets as one server process sees them, refreshed while they stay open.

    One row per user and process, so that with several processes behind a proxy every process
    can tell whether a leader is connected anywhere; a row its process stopped refreshing
    (the process died) counts as disconnected.
    """

    __tablename__ = "presence"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    instance: Mapped[str] = mapped_column(String(32), primary_key=True)
    connected: Mapped[bool]
    since: Mapped[datetime]
    seen_at: Mapped[datetime]


class TestAlert(Base):
    """A test alert to one leader, and when the leader's phone acknowledged it."""

    __tablename__ = "test_alerts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int]
    sent_at: Mapped[datetime]
    acked_at: Mapped[datetime | None]
    round_trip_ms: Mapped[float | None]
