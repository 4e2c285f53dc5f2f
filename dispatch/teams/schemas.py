from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from dispatch.schemas import LocalTime, LocationIn, LocationOut, Number, Schema, ShownName
from dispatch.teams.models import TeamKind

ZONE_DESCRIPTION = (
    "GeoJSON Polygon or MultiPolygon, patrol and response teams only, at most 2 degrees "
    'across. Coordinates are WGS84 unless the object carries "crs": "gcj02" or "bd09"; '
    "edges are straight lines in that system, as drawn on its map."
)


# A zone is metres to tens of kilometres across; a radius under a metre is no zone at all.
MIN_RADIUS_M = 1
MAX_RADIUS_M = 50_000
RADIUS_DESCRIPTION = (
    "circular zone around the site, 1 to 50,000 m; defaults to 100 (fixed_post) or 500 "
    "(mobile), whose zone is always a circle"
)


RadiusM = Annotated[Number, Field(ge=MIN_RADIUS_M, le=MAX_RADIUS_M, allow_inf_nan=False)]


NAME_DESCRIPTION = (
    "unique among the teams in service; surrounding whitespace is dropped; no control characters"
)


class TeamCreate(Schema):
    name: ShownName = Field(description=NAME_DESCRIPTION)
    kind: TeamKind
    location: LocationIn = Field(description="the team's site (fixed post, key site, station)")
    radius_m: RadiusM | None = Field(default=None, description=RADIUS_DESCRIPTION)
    zone: dict[str, Any] | None = Field(default=None, description=ZONE_DESCRIPTION)


def _absent_not_null(schema: dict[str, Any]) -> None:
    """The schema of a field that may be left out but is never null: no null default, and the
    value's own schema for ``X | None`` (which the validator below refuses null)."""
    schema.pop("default", None)
    options = schema.pop("anyOf", [])
    schema.update(*(o for o in options if o.get("type") != "null"))


class TeamPatch(Schema):
    """Only what is given changes. name, kind and location may be left out but not null.
    radius_m or zone null clears that one alone: {"zone": null} keeps a circle's radius_m.

    name, kind and location are optional (``X | None``) rather than a union with a hidden
    null, whose every member an error would name (``kind.str-enum[TeamKind]`` and ``kind.none``,
    not ``kind``)."""

    name: ShownName | None = Field(
        default=None,
        description=NAME_DESCRIPTION + "; the team's roster carries the new name",
        json_schema_extra=_absent_not_null,
    )
    kind: TeamKind | None = Field(
        default=None,
        description="a new kind without radius_m or zone takes that kind's zone (see radius_m)",
        json_schema_extra=_absent_not_null,
    )
    location: LocationIn | None = Field(default=None, json_schema_extra=_absent_not_null)
    radius_m: RadiusM | None = Field(default=None, description=RADIUS_DESCRIPTION)
    zone: dict[str, Any] | None = Field(default=None, description=ZONE_DESCRIPTION)

    @field_validator("name", "kind", "location")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only given values are validated: a field left out is not checked here.
        if value is None:
            raise ValueError("leave the field out to keep it; it cannot be null")
        return value


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
    retired_at: LocalTime | None = Field(
        description="when the team was retired (DELETE); null for a team in service"
    )


class CoveringTeamOut(TeamOut):
    distance_m: float = Field(description="geodesic metres from the team's site to the point")
