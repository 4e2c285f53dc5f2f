from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from alerts.models import JSONType
from dispatch.db import Base


class TeamKind(StrEnum):
    FIXED_POST = "fixed_post"
    MOBILE = "mobile"
    PATROL = "patrol"
    RESPONSE = "response"

    @property
    def tier(self) -> int:
        return TIER_OF_KIND[self]


TIER_OF_KIND = {
    TeamKind.FIXED_POST: 1,
    TeamKind.MOBILE: 1,
    TeamKind.PATROL: 2,
    TeamKind.RESPONSE: 3,
}
# The plan: a fixed post acts within 100 m of its site, a mobile team within 500 m.
DEFAULT_RADIUS_M = {TeamKind.FIXED_POST: 100.0, TeamKind.MOBILE: 500.0}
# The names a renamed team answers to in roster files written before: the latest few.
FORMER_NAMES_KEPT = 10
_ACTIVE = text("retired_at IS NULL")


class Team(Base):
    __tablename__ = "teams"
    # A name is one team's while it is in service: rosters (队伍名称), lists and alerts find and
    # show the team by it. A retired team's name may be taken again.
    __table_args__ = (
        Index(
            "uq_teams_active_name",
            "name",
            unique=True,
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        ),
        # The list's order (tier, name, ties by id): its pages are read from a cursor on, in
        # service and retired alike, without sorting a city's teams for each (migration 0026).
        Index("ix_teams_tier_name_id", "tier", "name", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    tier: Mapped[int]
    lon: Mapped[float]
    lat: Mapped[float]
    radius_m: Mapped[float | None]
    # A GeoJSON Polygon or MultiPolygon in WGS84, for police zones drawn as areas.
    zone: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    retired_at: Mapped[datetime | None] = mapped_column(index=True)
    # Each change of a team (creation and retirement too) takes the next revision, in the order
    # the changes commit (dispatch.teams.service.stamp): a server process's coverage index
    # catches up on whatever is newer than the revision it holds (Coverage.catch_up).
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    # The names it had before, newest first (at most FORMER_NAMES_KEPT): a roster file exported
    # before a rename still names the team by one of them.
    former_names: Mapped[list[str]] = mapped_column(JSONType, default=list)
