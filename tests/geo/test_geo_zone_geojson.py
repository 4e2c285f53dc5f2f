from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon

from geo import (
    CRS,
    PolygonZone,
    ZoneError,
    ZoneIndex,
    from_wgs84,
    parse_zone_geojson,
    to_wgs84,
    zone_to_geojson,
)

QINGXI = (114.159, 22.847)


def square(lon: float, lat: float, half_side_deg: float) -> list[list[float]]:
    return [
        [lon - half_side_deg, lat - half_side_deg],
        [lon + half_side_deg, lat - half_side_deg],
        [lon + half_side_deg, lat + half_side_deg],
        [lon - half_side_deg, lat + half_side_deg],
        [lon - half_side_deg, lat - half_side_deg],
    ]


def polygon(*rings: Sequence[Sequence[object]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def test_polygon_is_parsed_in_wgs84() -> None:
    geometry = parse_zone_geojson(polygon(square(*QINGXI, 0.001)))
    assert isinstance(geometry, Polygon)
    assert geometry.covers(Point(*QINGXI))
    assert geometry.covers(Point(QINGXI[0] + 0.001, QINGXI[1]))
    assert not geometry.covers(Point(QINGXI[0] + 0.0011, QINGXI[1]))


def test_polygon_with_hole() -> None:
    geometry = parse_zone_geojson(polygon(square(*QINGXI, 0.01), square(*QINGXI, 0.001)))
    assert not geometry.covers(Point(*QINGXI))
    assert geometry.covers(Point(QINGXI[0] + 0.005, QINGXI[1]))


def test_multipolygon() -> None:
    obj = {
        "type": "MultiPolygon",
        "coordinates": [[square(114.0, 22.0, 0.01)], [square(114.1, 22.0, 0.01)]],
    }
    geometry = parse_zone_geojson(obj)
    assert isinstance(geometry, MultiPolygon)
    assert geometry.covers(Point(114.0, 22.0)) and geometry.covers(Point(114.1, 22.0))
    assert not geometry.covers(Point(114.05, 22.0))


def test_altitude_is_ignored_and_tuples_are_accepted() -> None:
    ring = tuple((lon, lat, 12.5) for lon, lat in square(*QINGXI, 0.001))
    geometry = parse_zone_geojson({"type": "Polygon", "coordinates": (ring,)})
    assert geometry.equals(parse_zone_geojson(polygon(square(*QINGXI, 0.001))))


@pytest.mark.parametrize("altitude", ["a", math.nan, math.inf, None, True, 10**400])
def test_an_altitude_that_is_no_finite_number_is_refused(altitude: object) -> None:
    ring: list[list[object]] = [[*position] for position in square(*QINGXI, 0.001)]
    ring[2].append(altitude)
    with pytest.raises(ZoneError, match=r"coordinates\[0\]\[2\]: altitude .* finite number"):
        parse_zone_geojson(polygon(ring))


def _metres_to_degrees(lat: float) -> tuple[float, float]:
    """Degrees of longitude and of latitude in a metre, near lat (close enough for 3 m)."""
    return 1.0 / (111_320.0 * math.cos(math.radians(lat))), 1.0 / 110_574.0


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_edges_drawn_in_a_shifted_system_stay_where_they_were_drawn(crs: CRS) -> None:
    # A 0.05-degree square (about 5 km) drawn on a Chinese map: every point 3 m inside or
    # outside an edge, as drawn, is decided as drawn once the point itself is converted.
    lon0, lat0 = from_wgs84(*QINGXI, crs)
    half = 0.025
    ring = square(lon0, lat0, half)
    geometry = parse_zone_geojson(polygon(ring), crs=crs)
    corners_only = Polygon([to_wgs84(lon, lat, crs) for lon, lat in ring])
    lon_per_m, lat_per_m = _metres_to_degrees(lat0)
    along = np.linspace(-half, half, 401)[1:-1]
    misdecided_by_corners = 0
    for offset_m, inside in ((-3.0, True), (3.0, False)):
        d_lon, d_lat = offset_m * lon_per_m, offset_m * lat_per_m
        drawn = [
            *[(lon0 + t, lat0 - half - d_lat) for t in along],  # south edge
            *[(lon0 + t, lat0 + half + d_lat) for t in along],  # north edge
            *[(lon0 - half - d_lon, lat0 + t) for t in along],  # west edge
            *[(lon0 + half + d_lon, lat0 + t) for t in along],  # east edge
        ]
        points = shapely.points([to_wgs84(lon, lat, crs) for lon, lat in drawn])
        assert (shapely.covers(geometry, points) == inside).all()
        misdecided_by_corners += int((shapely.covers(corners_only, points) != inside).sum())
    if crs is CRS.BD09:
        # Converting the corners alone, with straight edges between, gets some of them wrong
        # (BD-09's edges so drawn stray up to 29 m; GCJ-02's 4.4 m, not 3 m here).
        assert misdecided_by_corners > 0


def test_edges_drawn_in_wgs84_are_kept_as_sent() -> None:
    ring = square(*QINGXI, 0.05)
    assert list(parse_zone_geojson(polygon(ring)).exterior.coords) == [tuple(p) for p in ring]


def test_the_vertex_limit_counts_what_was_sent_not_the_cut_edges() -> None:
    # Cut every 0.001 degrees, the 0.02-degree edges of this square become 80 positions.
    ring = square(*from_wgs84(*QINGXI, CRS.BD09), 0.01)
    geometry = parse_zone_geojson(polygon(ring), crs=CRS.BD09, max_vertices=80)
    assert len(geometry.exterior.coords) > 80
    with pytest.raises(ZoneError, match="more than 4 vertices"):
        parse_zone_geojson(polygon(ring), crs=CRS.BD09, max_vertices=4)
    # The added positions have an allowance of the same size: 80 more, but not 79.
    with pytest.raises(ZoneError, match="edges are too long to convert from bd09"):
        parse_zone_geojson(polygon(ring), crs=CRS.BD09, max_vertices=79)


@pytest.mark.parametrize(
    "ring",
    [
        # The whole world.
        [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]],
        # A small square across the 180th meridian, which would come out as the rest of the world.
        [[179.9, 10.0], [-179.9, 10.0], [-179.9, 10.1], [179.9, 10.1], [179.9, 10.0]],
        # Long and thin: 3 degrees of latitude.
        [[114.0, 21.0], [114.01, 21.0], [114.01, 24.0], [114.0, 24.0], [114.0, 21.0]],
    ],
)
def test_a_zone_wider_than_two_degrees_is_refused(ring: list[list[float]]) -> None:
    with pytest.raises(ZoneError, match="a zone spans at most 2 degrees"):
        parse_zone_geojson(polygon(ring))


def test_the_span_counts_every_polygon_of_a_multipolygon() -> None:
    obj = {
        "type": "MultiPolygon",
        "coordinates": [[square(113.0, 22.0, 0.01)], [square(115.5, 22.0, 0.01)]],
    }
    with pytest.raises(ZoneError, match=r"spans 2\.52 degrees of longitude"):
        parse_zone_geojson(obj)
    assert parse_zone_geojson(obj, max_span_deg=3.0).is_valid


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_shifted_polygon_is_converted_to_wgs84(crs: CRS) -> None:
    # A 100 m square drawn on a Chinese map around the spot a team stands on.
    shifted_centre = from_wgs84(*QINGXI, crs)
    ring = square(*shifted_centre, 0.0005)
    geometry = parse_zone_geojson(polygon(ring), crs=crs)
    assert geometry.covers(Point(*QINGXI))
    # Read as WGS-84 the same numbers land hundreds of metres away.
    assert not parse_zone_geojson(polygon(ring)).covers(Point(*QINGXI))
    corners = [to_wgs84(lon, lat, crs) for lon, lat in ring]
    assert [xy for xy in geometry.exterior.coords if xy in corners] == corners


def test_parsed_zone_works_in_the_index() -> None:
    geometry = parse_zone_geojson(polygon(square(*QINGXI, 0.001)), crs=CRS.GCJ02)
    index = ZoneIndex([PolygonZone("team", *QINGXI, geometry)])
    centre = to_wgs84(*QINGXI, CRS.GCJ02)
    assert [hit.key for hit in index.covering(*centre)] == ["team"]


def test_self_intersecting_bowtie_is_rejected_with_the_reason() -> None:
    bowtie = [[114.15, 22.84], [114.17, 22.86], [114.17, 22.84], [114.15, 22.86], [114.15, 22.84]]
    with pytest.raises(ZoneError, match=r"Self-intersection\[114\.16 22\.85\]") as caught:
        parse_zone_geojson(polygon(bowtie))
    assert "Self-intersection" in caught.value.message


def test_hole_outside_shell_is_rejected() -> None:
    with pytest.raises(ZoneError, match="invalid zone geometry"):
        parse_zone_geojson(polygon(square(114.0, 22.0, 0.01), square(115.0, 22.0, 0.01)))


OPEN_RING = [[114.0, 22.0], [114.1, 22.0], [114.1, 22.1], [114.0, 22.1]]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("POLYGON((0 0, 1 0, 1 1, 0 0))", "GeoJSON object"),
        ({"type": "Point", "coordinates": [114.0, 22.0]}, "Polygon or MultiPolygon"),
        ({"coordinates": [square(114.0, 22.0, 0.01)]}, "Polygon or MultiPolygon"),
        ({"type": "Polygon"}, r"coordinates: expected a list of linear rings"),
        ({"type": "Polygon", "coordinates": []}, "at least one linear ring"),
        ({"type": "MultiPolygon", "coordinates": []}, "at least one polygon"),
        ({"type": "MultiPolygon", "coordinates": [[]]}, r"coordinates\[0\]: a Polygon needs"),
        (
            {"type": "Polygon", "coordinates": square(114.0, 22.0, 0.01)},
            r"coordinates\[0\]: expected a list of positions",
        ),
        (polygon([*OPEN_RING, [114.0, 22.05]]), "not closed"),
        (polygon([[114.0, 22.0], [114.1, 22.0], [114.0, 22.0]]), "at least 4 positions, got 3"),
        (
            polygon([[114.0, 22.0], [114.1], [114.1, 22.1], [114.0, 22.0]]),
            r"\[0\]\[1\]: a position",
        ),
        (polygon([[114.0, 22.0], [114.1, "22"], [114.1, 22.1], [114.0, 22.0]]), "must be numbers"),
        (polygon([[114.0, 22.0], [True, 22.0], [114.1, 22.1], [114.0, 22.0]]), "must be numbers"),
        (polygon([[114.0, 22.0], [math.nan, 22.0], [114.1, 22.1], [114.0, 22.0]]), "finite"),
        (polygon([[114.0, 22.0], [114.1, math.inf], [114.1, 22.1], [114.0, 22.0]]), "finite"),
        (
            polygon([[114.0, 22.0], [114.1, 91.0], [114.1, 22.1], [114.0, 22.0]]),
            r"\[0\]\[1\]: lat must",
        ),
        (polygon([[114.0, 22.0], [190.0, 22.0], [114.1, 22.1], [114.0, 22.0]]), "lon must"),
        # Integers no float can hold (JSON allows any number of digits): out of range.
        (
            polygon([[114.0, 22.0], [10**400, 22.0], [114.1, 22.1], [114.0, 22.0]]),
            r"coordinates\[0\]\[1\]: lon must be within \[-180, 180\]",
        ),
        (
            polygon([[114.0, 22.0], [114.1, -(10**400)], [114.1, 22.1], [114.0, 22.0]]),
            r"coordinates\[0\]\[1\]: lat must be within \[-90, 90\]",
        ),
        (
            polygon([[114.0, 22.0], [114.0, 22.0], [114.0, 22.0], [114.0, 22.0]]),
            "invalid zone geometry",
        ),
    ],
)
def test_bad_structure_is_rejected(obj: object, message: str) -> None:
    with pytest.raises(ZoneError, match=message):
        parse_zone_geojson(obj)


def test_shifted_polygon_outside_china_is_rejected() -> None:
    paris = polygon(square(2.35, 48.85, 0.01))
    with pytest.raises(ZoneError, match="gcj02 coordinates must lie within China"):
        parse_zone_geojson(paris, crs=CRS.GCJ02)
    assert parse_zone_geojson(paris).is_valid


def test_unknown_crs_is_rejected() -> None:
    with pytest.raises(ZoneError, match="unknown coordinate system"):
        parse_zone_geojson(polygon(square(*QINGXI, 0.01)), crs="mars")  # type: ignore[arg-type]


def test_vertex_limit_counts_every_ring() -> None:
    obj = polygon(square(*QINGXI, 0.01), square(*QINGXI, 0.001))
    assert parse_zone_geojson(obj, max_vertices=10).is_valid
    with pytest.raises(ZoneError, match="more than 9 vertices"):
        parse_zone_geojson(obj, max_vertices=9)


def test_geojson_round_trip() -> None:
    obj = {
        "type": "MultiPolygon",
        "coordinates": [
            [square(114.0, 22.0, 0.01), square(114.0, 22.0, 0.001)],
            [square(114.1, 22.0, 0.01)],
        ],
    }
    geometry = parse_zone_geojson(obj)
    out = zone_to_geojson(geometry)
    assert json.loads(json.dumps(out)) == out
    assert out == obj
    assert parse_zone_geojson(out).equals_exact(geometry, tolerance=0.0)


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_geojson_out_in_a_shifted_system_round_trips(crs: CRS) -> None:
    geometry = parse_zone_geojson(polygon(square(*QINGXI, 0.002)))
    shifted = zone_to_geojson(geometry, crs=crs)
    assert shifted["coordinates"][0][0] == list(
        from_wgs84(QINGXI[0] - 0.002, QINGXI[1] - 0.002, crs)
    )
    back = parse_zone_geojson(shifted, crs=crs)
    # The corners come back. The edges went out straight in the shifted system between shifted
    # corners and are read back as drawn there: for this 0.004-degree square within 0.2 m of
    # the WGS-84 edges (BD-09; GCJ-02 within 3 mm).
    corners = list(geometry.exterior.coords)
    kept = [xy for xy in back.exterior.coords if any(_near(xy, c, 1e-10) for c in corners)]
    assert len(kept) == len(corners)
    assert all(_near(xy, c, 1e-10) for xy, c in zip(kept, corners, strict=True))
    assert shapely.hausdorff_distance(back, geometry) < 2e-6


def _near(a: Sequence[float], b: Sequence[float], tolerance: float) -> bool:
    return abs(a[0] - b[0]) <= tolerance and abs(a[1] - b[1]) <= tolerance
