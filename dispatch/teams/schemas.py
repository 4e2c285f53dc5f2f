from __future__ import annotations

from typing import Any

from pydantic import Field

from dispatch.schemas import LocalTime, LocationIn, LocationOut, Number, Schema
from dispatch.teams.models import TeamKind

ZONE_DESCRIPTION = (
    "GeoJSON Polygon or MultiPolygon. Coordinates are WGS84 unless the object carries "
    '"crs": "gcj02" or "bd09".'
)


class TeamCreate(Schema):
    name: str = Field(min_length=1, max_length=128)
    kind: TeamKind
    location: LocationIn = Field(description="the team's site (fixed post, key site, station)")
    radius_m: Number | None = Field(
        default=None,
        gt=0,
        le=50_000,
        allow_inf_nan=False,
        description="circular zone around the site; defaults to 100 (fixed_post) or 500 (mobile)",
    )
    zone: dict[str, Any] | None = Field(default=None, description=ZONE_DESCRIPTION)


class TeamPatch(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    kind: TeamKind | None = None
    location: LocationIn | None = None
    radius_m: Number | None = Field(default=None, gt=0, le=50_000, allow_inf_nan=False)
    zone: dict[str, Any] | None = Field(default=None, description=ZONE_DESCRIPTION)


class TeamOut(Schema):
    id: str
    name: str
    kind: TeamKind
    tier: int
    location: LocationOut
    radius_m: float | None
    zone: dict[str, Any] | None
    created_at: LocalTime
    updated_at: LocalTime


class CoveringTeamOut(TeamOut):
    distance_m: float = Field(description="geodesic metres from the team's site to the point")
