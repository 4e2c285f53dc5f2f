from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class JobStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


class Job(Base):
    """A step due at a time (an escalation, a reminder): a row, so it survives restarts and is
    claimed by exactly one process."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "status", "due_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(default=0)
    fired_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(255))
