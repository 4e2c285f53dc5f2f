from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class Presence(Base):
    """A user's sockets as one server process sees them: written when the first opens and when
    the last closes (``seen_at``), and true while its process's heartbeat is fresh.

    One row per user and process, so that with several processes behind a proxy every process
    can tell whether a leader is connected anywhere; a row whose process stopped beating (the
    process died) counts as disconnected from its last beat on.
    """

    __tablename__ = "presence"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    instance: Mapped[str] = mapped_column(String(32), primary_key=True)
    connected: Mapped[bool]
    since: Mapped[datetime]
    seen_at: Mapped[datetime]


class PresenceBeat(Base):
    """A server process's heartbeat, for all its presence rows at once: one row a process, so
    that a heartbeat is one write whatever the number of sockets it holds (it was one row a
    connected user: 10k rows rewritten every heartbeat with 10k leaders connected)."""

    __tablename__ = "presence_beats"

    instance: Mapped[str] = mapped_column(String(32), primary_key=True)
    seen_at: Mapped[datetime]
    # When the process stopped, its sockets closed for the restart written closed at that
    # moment (``PresenceTracker.stop``); None while it runs, and for one that died.
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


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
