from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class RateBucket(Base):
    """A token bucket shared by every server process: ``tokens`` as of ``updated_at``."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float]
    updated_at: Mapped[datetime]


class Backoff(Base):
    """Failed attempts under one key (an account name, an address) and the wait they earned."""

    __tablename__ = "backoffs"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Not yet forgotten (``dispatch.security.limits.BackoffPolicy.count``) ...
    failures: Mapped[int]
    # ... as of this time, from which the next one is forgotten.
    last_at: Mapped[datetime] = mapped_column(index=True)
    blocked_until: Mapped[datetime | None]
