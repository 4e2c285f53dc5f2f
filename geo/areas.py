"""Geodesic circles as polygons, and areas measured on the ellipsoid.

A circle zone is "every point within r metres (geodesic) of a centre".  To combine such zones
with polygons (unions, differences against a village boundary) they become polygons whose
vertices lie exactly on the geodesic circle: each vertex is the end of a geodesic of length r
from the centre (Karney's direct problem through pyproj).  The polygon is inscribed, so it never
claims more than the circle: between two vertices its edge runs inside the circle by at most the
sagitta r(1 - cos(pi/n)), and n is chosen so that this is below the tolerance asked for.  The
edges are straight in longitude/latitude; over the few metres between vertices that differs from
the geodesic chord by far less than a millimetre.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from geo.crs import check_lon_lat, finite_float
from geo.geodesy import wgs84_geod

DEFAULT_TOLERANCE_M = 0.01
MIN_SEGMENTS = 64
MAX_SEGMENTS = 20_000


def circle_segments(radius_m: float, tolerance_m: float = DEFAULT_TOLERANCE_M) -> int:
    """Vertices needed so the inscribed polygon stays within tolerance_m of the circle."""
    radius = finite_float(radius_m)
    if radius is None or radius <= 0:
        raise ValueError("radius_m must be a positive finite number")
    tolerance = finite_float(tolerance_m)
    if tolerance is None or tolerance <= 0:
        raise ValueError("tolerance_m must be a positive finite number")
    if tolerance >= radius:
        return MIN_SEGMENTS
    # sagitta = r (1 - cos(pi / n)) <= tolerance  <=>  n >= pi / acos(1 - tolerance / r)
    needed = math.ceil(math.pi / math.acos(1.0 - tolerance / radius))
    return min(max(needed, MIN_SEGMENTS), MAX_SEGMENTS)


def sagitta_m(radius_m: float, segments: int) -> float:
    """How far inside the true circle the polygon's edges run at most, in metres."""
    return radius_m * (1.0 - math.cos(math.pi / segments))


def geodesic_circle(
    lon: float, lat: float, radius_m: float, tolerance_m: float = DEFAULT_TOLERANCE_M
) -> Polygon:
    """An inscribed polygon of the geodesic circle, within tolerance_m of it everywhere."""
    check_lon_lat(lon, lat)
    segments = circle_segments(radius_m, tolerance_m)
    # Clockwise from north, then reversed: shapely and GeoJSON prefer counter-clockwise shells.
    azimuths = np.linspace(0.0, 360.0, segments, endpoint=False)
    lons, lats, _ = wgs84_geod().fwd(
        np.full(segments, lon), np.full(segments, lat), azimuths, np.full(segments, radius_m)
    )
    ring = np.column_stack([lons, lats])[::-1]
    return Polygon(ring)


def area_m2(geometry: Polygon | MultiPolygon | shapely.Geometry) -> float:
    """The geodesic area of a lon/lat polygon (edges taken as geodesics), in square metres."""
    if geometry.is_empty:
        return 0.0
    parts = getattr(geometry, "geoms", [geometry])
    total = 0.0
    for part in parts:
        if isinstance(part, Polygon):
            # Counter-clockwise shells give positive areas, clockwise holes negative ones.
            signed, _ = wgs84_geod().geometry_area_perimeter(orient(part, 1.0))
            total += float(signed)
        elif isinstance(part, MultiPolygon):
            total += area_m2(part)
    return total


def polygonal(geometry: shapely.Geometry) -> Polygon | MultiPolygon:
    """The polygon parts of an overlay result (which may carry stray lines or points)."""
    if isinstance(geometry, Polygon | MultiPolygon):
        return geometry
    polygons: list[Polygon] = []
    for part in getattr(geometry, "geoms", []):
        if isinstance(part, Polygon):
            polygons.append(part)
        elif isinstance(part, MultiPolygon):
            polygons.extend(part.geoms)
    return MultiPolygon(polygons)
