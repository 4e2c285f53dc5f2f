from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

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


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_shifted_polygon_is_converted_to_wgs84(crs: CRS) -> None:
    # A 100 m square drawn on a Chinese map around the spot a team stands on.
    shifted_centre = from_wgs84(*QINGXI, crs)
    ring = square(*shifted_centre, 0.0005)
    geometry = parse_zone_geojson(polygon(ring), crs=crs)
    assert geometry.covers(Point(*QINGXI))
    # Read as WGS-84 the same numbers land hundreds of metres away.
    assert not parse_zone_geojson(polygon(ring)).covers(Point(*QINGXI))
    expected = [to_wgs84(lon, lat, crs) for lon, lat in ring]
    assert list(geometry.exterior.coords) == expected


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
    assert shapely.equals_exact(back, geometry, tolerance=1e-10)
