"""Geography for dispatch: coordinate systems, distances, zones and their index.

Everything here is WGS-84 lon/lat unless a CRS says otherwise, and nothing
here knows about the server.
"""

from geo.crs import CRS, check_lon_lat, from_wgs84, in_china, to_wgs84
from geo.errors import CoordinateError, GeoError, ZoneError
from geo.geodesy import distance_m, distances_m
from geo.zones import (
    CircleZone,
    Hit,
    PolygonZone,
    Zone,
    ZoneIndex,
    parse_zone_geojson,
    zone_to_geojson,
)

__all__ = [
    "CRS",
    "CircleZone",
    "CoordinateError",
    "GeoError",
    "Hit",
    "PolygonZone",
    "Zone",
    "ZoneError",
    "ZoneIndex",
    "check_lon_lat",
    "distance_m",
    "distances_m",
    "from_wgs84",
    "in_china",
    "parse_zone_geojson",
    "to_wgs84",
    "zone_to_geojson",
]
