"""Shapes shared by every domain: coordinates in, coordinates out, and times as shown."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from dispatch.errors import InvalidInput
from geo.crs import CRS, to_wgs84
from geo.errors import CoordinateError

# Times are stored in UTC and shown where the users are.
DISPLAY_TZ = ZoneInfo("Asia/Shanghai")


# Cached: a report shows the same few instants many times (every dispatch's alerted_at is its
# reported_at), once for its messages and again for its response.
@functools.lru_cache(maxsize=4096)
def show_time(value: datetime) -> str:
    try:
        local = value.astimezone(DISPLAY_TZ)
    except OverflowError:
        # At the very ends of the calendar (a device's broken clock): the instant in UTC.
        return value.astimezone(UTC).isoformat()
    offset = local.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        # Before 1901 the zone's offset is local mean time (+08:05:43), which RFC 3339 cannot
        # write: the same instant at the offset rounded to the minute.
        minutes = round(offset / timedelta(minutes=1))
        local = value.astimezone(timezone(timedelta(minutes=minutes)))
    return local.isoformat()


LocalTime = Annotated[
    datetime,
    PlainSerializer(show_time, return_type=str, when_used="always"),
    Field(json_schema_extra={"format": "date-time"}),
]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class LocationIn(Schema):
    """A point as the user has it: phones give WGS84, Chinese web maps GCJ-02 or BD-09."""

    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="longitude, degrees")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="latitude, degrees")
    crs: CRS = Field(default=CRS.WGS84, description="coordinate system of lon/lat")

    def to_wgs84(self, field: str = "location") -> tuple[float, float]:
        return wgs84_point(self.lon, self.lat, self.crs, field)


class LocationOut(Schema):
    """A point in WGS84, as stored."""

    lon: float
    lat: float


def wgs84_point(lon: float, lat: float, crs: CRS, field: str) -> tuple[float, float]:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidInput(f"{field}: coordinates must be finite numbers", field=field)
    try:
        return to_wgs84(lon, lat, crs)
    except CoordinateError as error:
        name = f"{field}.{error.field}"
        raise InvalidInput(f"{name}: {error.message}", field=name) from None
