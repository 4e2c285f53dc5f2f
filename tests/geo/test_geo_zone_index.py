from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
from numpy.typing import NDArray
from shapely.geometry import Point, Polygon, box

from geo import CircleZone, CoordinateError, Hit, PolygonZone, Zone, ZoneError, ZoneIndex
from geo.areas import geodesic_circle

GEOD = pyproj.Geod(ellps="WGS84")
QINGXI = (114.159, 22.847)
CITIES = {
    "qingxi": QINGXI,
    "harbin": (126.63, 45.75),
    "urumqi": (87.62, 43.82),
    "sanya": (109.51, 18.25),
    "mohe": (122.53, 52.97),
}
MM = 0.001


def destination(lon: float, lat: float, azimuth: float, distance: float) -> tuple[float, float]:
    end_lon, end_lat, _ = GEOD.fwd(lon, lat, azimuth, distance)
    return end_lon, end_lat


def covered_keys(index: ZoneIndex, lon: float, lat: float) -> set[str]:
    return {hit.key for hit in index.covering(lon, lat)}


def random_circles(
    rng: np.random.Generator, centre: tuple[float, float], count: int
) -> list[CircleZone]:
    lons = centre[0] + rng.uniform(-0.05, 0.05, count)
    lats = centre[1] + rng.uniform(-0.05, 0.05, count)
    radii = rng.choice([100.0, 500.0, 37.5, 1234.5], count)
    return [
        CircleZone(f"c{i}", lon, lat, radius)
        for i, (lon, lat, radius) in enumerate(
            zip(lons.tolist(), lats.tolist(), radii.tolist(), strict=True)
        )
    ]


# --- exact circle boundary ----------------------------------------------------


@pytest.mark.parametrize("city", sorted(CITIES))
def test_circle_boundary_is_exact_to_a_millimetre(city: str) -> None:
    rng = np.random.default_rng(sorted(CITIES).index(city))
    circles = random_circles(rng, CITIES[city], 40)
    index = ZoneIndex(circles)
    for circle in circles:
        for azimuth in rng.uniform(-180.0, 180.0, 8).tolist():
            inside = destination(circle.lon, circle.lat, azimuth, circle.radius_m - MM)
            outside = destination(circle.lon, circle.lat, azimuth, circle.radius_m + MM)
            assert circle.key in covered_keys(index, *inside)
            assert circle.key not in covered_keys(index, *outside)


def test_boundary_itself_is_inside() -> None:
    index = ZoneIndex([CircleZone("team", *QINGXI, 100.0)])
    for azimuth in (0.0, 45.0, 90.0, 180.0, -90.0, 12.3):
        assert covered_keys(index, *destination(*QINGXI, azimuth, 99.9995)) == {"team"}
        assert covered_keys(index, *destination(*QINGXI, azimuth, 100.0005)) == set()


@pytest.mark.parametrize("lat", [0.0, 30.0, 60.0, 75.0, 85.0, 88.9, 89.5, 89.9995, -60.0, -89.99])
def test_bounding_boxes_are_conservative_at_every_latitude(lat: float) -> None:
    circle = CircleZone("team", 20.0, lat, 500.0)
    index = ZoneIndex([circle])
    for azimuth in np.linspace(-180.0, 180.0, 73).tolist():
        assert covered_keys(index, *destination(20.0, lat, azimuth, 500.0 - MM)) == {"team"}


def test_circle_across_the_antimeridian() -> None:
    index = ZoneIndex([CircleZone("team", 179.9999, 10.0, 500.0)])
    assert covered_keys(index, -179.999, 10.0) == {"team"}
    assert covered_keys(index, *destination(179.9999, 10.0, 90.0, 500.0 - MM)) == {"team"}


def test_hit_distance_is_geodesic_from_centre_and_sorted() -> None:
    index = ZoneIndex(
        [
            CircleZone("far", *destination(*QINGXI, 0.0, 300.0), 500.0),
            CircleZone("near", *QINGXI, 500.0),
        ]
    )
    point = destination(*QINGXI, 90.0, 50.0)
    hits = index.covering(*point)
    assert [hit.key for hit in hits] == ["near", "far"]
    assert hits[0].distance_m == pytest.approx(50.0, abs=1e-6)
    assert hits[1].distance_m == GEOD.inv(index.get("far").lon, index.get("far").lat, *point)[2]  # type: ignore[union-attr]


def test_equal_distances_are_ordered_by_key() -> None:
    index = ZoneIndex([CircleZone(key, *QINGXI, 100.0) for key in ("b", "c", "a")])
    assert [hit.key for hit in index.covering(*QINGXI)] == ["a", "b", "c"]
    assert [hit.key for hit in index.covering_many([QINGXI[0]], [QINGXI[1]])[0]] == ["a", "b", "c"]


# --- agreement with brute force -------------------------------------------------


def haversine_m(
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    lons: NDArray[np.float64],
    lats: NDArray[np.float64],
) -> NDArray[np.float64]:
    phi1, phi2 = np.radians(lat), np.radians(lats)
    a = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin(np.radians(lons - lon) / 2) ** 2
    )
    result: NDArray[np.float64] = 2 * 6371008.8 * np.arcsin(np.sqrt(a))
    return result


def brute_force_circle_hits(
    circles: list[CircleZone], lons: NDArray[np.float64], lats: NDArray[np.float64]
) -> list[list[Hit]]:
    """Check every (point, circle) pair, without any index."""
    centre_lons = np.array([c.lon for c in circles])
    centre_lats = np.array([c.lat for c in circles])
    radii = np.array([c.radius_m for c in circles])
    result: list[list[Hit]] = []
    for chunk in range(0, len(lons), 200):
        chunk_lons, chunk_lats = lons[chunk : chunk + 200, None], lats[chunk : chunk + 200, None]
        # The sphere is within 0.6 % of the ellipsoid, so this only drops
        # pairs that are certainly out; every survivor is decided by Geod.
        sphere_m = haversine_m(chunk_lons, chunk_lats, centre_lons, centre_lats)
        points, zones = np.nonzero(sphere_m <= radii * 1.01 + 1.0)
        _, _, exact_m = GEOD.inv(
            centre_lons[zones], centre_lats[zones], chunk_lons[points, 0], chunk_lats[points, 0]
        )
        per_point: list[list[Hit]] = [[] for _ in range(len(chunk_lons))]
        for p, z, distance in zip(points.tolist(), zones.tolist(), exact_m.tolist(), strict=True):
            if distance <= radii[z]:
                per_point[p].append(Hit(circles[z].key, distance))
        result.extend(sorted(hits, key=lambda hit: (hit.distance_m, hit.key)) for hits in per_point)
    return result


@pytest.fixture(scope="module")
def dense_circles() -> list[CircleZone]:
    # 10k teams with 100 m / 500 m zones over a 20 km square around Qingxi.
    rng = np.random.default_rng(2024)
    west, south = destination(*QINGXI, 225.0, 10_000 * math.sqrt(2))
    east, north = destination(*QINGXI, 45.0, 10_000 * math.sqrt(2))
    lons, lats = rng.uniform(west, east, 10_000), rng.uniform(south, north, 10_000)
    radii = rng.choice([100.0, 500.0], 10_000)
    return [
        CircleZone(f"team-{i}", lon, lat, radius)
        for i, (lon, lat, radius) in enumerate(
            zip(lons.tolist(), lats.tolist(), radii.tolist(), strict=True)
        )
    ]


@pytest.fixture(scope="module")
def query_points(
    dense_circles: list[CircleZone],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(99)
    lons = np.array([c.lon for c in dense_circles])
    lats = np.array([c.lat for c in dense_circles])
    uniform_lons = rng.uniform(lons.min() - 0.005, lons.max() + 0.005, 1000)
    uniform_lats = rng.uniform(lats.min() - 0.005, lats.max() + 0.005, 1000)
    # Half the points sit a millimetre inside or outside some zone's edge.
    edge_points = [
        destination(c.lon, c.lat, rng.uniform(-180, 180), c.radius_m + rng.choice([-MM, MM]))
        for c in rng.choice(np.array(dense_circles, dtype=object), 1000).tolist()
    ]
    edge_lons, edge_lats = zip(*edge_points, strict=True)
    return np.concatenate([uniform_lons, edge_lons]), np.concatenate([uniform_lats, edge_lats])


def test_covering_agrees_with_brute_force(
    dense_circles: list[CircleZone], query_points: tuple[NDArray[np.float64], NDArray[np.float64]]
) -> None:
    index = ZoneIndex(dense_circles)
    lons, lats = query_points
    expected = brute_force_circle_hits(dense_circles, lons, lats)
    for lon, lat, expected_hits in zip(lons.tolist(), lats.tolist(), expected, strict=True):
        assert index.covering(lon, lat) == expected_hits
    # Guards against a vacuous pass: zones overlap heavily in this layout.
    assert sum(map(len, expected)) > 5 * len(lons)


def test_covering_many_equals_covering(
    dense_circles: list[CircleZone], query_points: tuple[NDArray[np.float64], NDArray[np.float64]]
) -> None:
    index = ZoneIndex(dense_circles)
    lons, lats = query_points
    expected = [
        index.covering(lon, lat) for lon, lat in zip(lons.tolist(), lats.tolist(), strict=True)
    ]
    assert index.covering_many(lons, lats) == expected


def test_mixed_circles_and_polygons_agree_with_brute_force() -> None:
    rng = np.random.default_rng(5)
    circles = random_circles(rng, QINGXI, 300)
    polygons = [
        PolygonZone(f"p{i}", lon, lat, box(lon - 0.002, lat - 0.001, lon + 0.001, lat + 0.002))
        for i, (lon, lat) in enumerate(
            zip(
                (QINGXI[0] + rng.uniform(-0.05, 0.05, 200)).tolist(),
                (QINGXI[1] + rng.uniform(-0.05, 0.05, 200)).tolist(),
                strict=True,
            )
        )
    ]
    index = ZoneIndex([*circles, *polygons])
    lons = QINGXI[0] + rng.uniform(-0.055, 0.055, 500)
    lats = QINGXI[1] + rng.uniform(-0.055, 0.055, 500)
    circle_hits = brute_force_circle_hits(circles, lons, lats)
    many = index.covering_many(lons, lats)
    for i, (lon, lat) in enumerate(zip(lons.tolist(), lats.tolist(), strict=True)):
        expected = circle_hits[i] + [
            Hit(p.key, GEOD.inv(p.anchor_lon, p.anchor_lat, lon, lat)[2])
            for p in polygons
            if p.geometry.covers(Point(lon, lat))
        ]
        expected.sort(key=lambda hit: (hit.distance_m, hit.key))
        assert index.covering(lon, lat) == expected
        assert many[i] == expected


# --- polygons ---------------------------------------------------------------------


def test_polygon_covers_its_boundary_and_interior_only() -> None:
    square = box(114.15, 22.84, 114.16, 22.85)
    index = ZoneIndex([PolygonZone("square", 114.155, 22.845, square)])
    assert covered_keys(index, 114.155, 22.845) == {"square"}
    assert covered_keys(index, 114.15, 22.84) == {"square"}  # corner
    assert covered_keys(index, 114.155, 22.85) == {"square"}  # edge
    assert covered_keys(index, 114.16, 22.8475) == {"square"}  # edge
    assert covered_keys(index, 114.1600001, 22.845) == set()
    [hit] = index.covering(114.15, 22.84)
    assert hit.distance_m == GEOD.inv(114.155, 22.845, 114.15, 22.84)[2]


def test_polygon_hole_is_not_covered_but_its_edge_is() -> None:
    with_hole = Polygon(
        [(114.0, 22.0), (114.1, 22.0), (114.1, 22.1), (114.0, 22.1)],
        [[(114.04, 22.04), (114.06, 22.04), (114.06, 22.06), (114.04, 22.06)]],
    )
    index = ZoneIndex([PolygonZone("ring", 114.0, 22.0, with_hole)])
    assert covered_keys(index, 114.05, 22.05) == set()
    assert covered_keys(index, 114.04, 22.05) == {"ring"}
    assert covered_keys(index, 114.02, 22.02) == {"ring"}


def test_multipolygon_covers_each_part() -> None:
    parts = box(114.0, 22.0, 114.01, 22.01).union(box(114.02, 22.0, 114.03, 22.01))
    index = ZoneIndex([PolygonZone("two", 114.015, 22.005, parts)])
    assert covered_keys(index, 114.005, 22.005) == {"two"}
    assert covered_keys(index, 114.025, 22.005) == {"two"}
    assert covered_keys(index, 114.015, 22.005) == set()


def test_invalid_polygon_zone_is_rejected() -> None:
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    with pytest.raises(ZoneError, match="Self-intersection"):
        PolygonZone("bad", 0.5, 0.5, bowtie)


# --- within ---------------------------------------------------------------------------


def test_within_finds_circle_centres_in_the_wider_ring() -> None:
    rng = np.random.default_rng(8)
    circles = random_circles(rng, QINGXI, 2000)
    square = PolygonZone(
        "poly",
        *QINGXI,
        box(QINGXI[0] - 0.001, QINGXI[1] - 0.001, QINGXI[0] + 0.001, QINGXI[1] + 0.001),
    )
    index = ZoneIndex([*circles, square])
    expected = sorted(
        (Hit(c.key, d) for c in circles if (d := GEOD.inv(c.lon, c.lat, *QINGXI)[2]) <= 1000.0),
        key=lambda hit: (hit.distance_m, hit.key),
    )
    assert expected
    assert index.within(*QINGXI, 1000.0) == expected
    wanted = {hit.key for hit in expected[::2]}
    assert index.within(*QINGXI, 1000.0, keys_filter=wanted) == expected[::2]


def test_within_boundary_is_exact() -> None:
    centre = destination(*QINGXI, 33.0, 1000.0 - MM)
    beyond = destination(*QINGXI, 33.0, 1000.0 + MM)
    index = ZoneIndex([CircleZone("in", *centre, 100.0), CircleZone("out", *beyond, 100.0)])
    assert [hit.key for hit in index.within(*QINGXI, 1000.0)] == ["in"]


# --- replace / remove / construction ---------------------------------------------------


def test_replace_moves_a_zone_and_leaves_the_original_alone() -> None:
    far = destination(*QINGXI, 0.0, 5000.0)
    original = ZoneIndex([CircleZone("a", *QINGXI, 100.0), CircleZone("b", *QINGXI, 500.0)])
    moved = original.replace(CircleZone("a", *far, 100.0))
    assert covered_keys(moved, *QINGXI) == {"b"}
    assert covered_keys(moved, *far) == {"a"}
    assert covered_keys(original, *QINGXI) == {"a", "b"}
    assert moved.keys() == ("a", "b")
    assert len(moved) == 2


def test_replace_with_a_new_key_adds_it() -> None:
    index = ZoneIndex([CircleZone("a", *QINGXI, 100.0)]).replace(CircleZone("c", *QINGXI, 50.0))
    assert index.keys() == ("a", "c")
    assert covered_keys(index, *QINGXI) == {"a", "c"}


def test_replace_circle_by_polygon() -> None:
    index = ZoneIndex([CircleZone("a", *QINGXI, 100.0)])
    far_box = box(115.0, 23.0, 115.01, 23.01)
    index = index.replace(PolygonZone("a", 115.005, 23.005, far_box))
    assert covered_keys(index, *QINGXI) == set()
    assert covered_keys(index, 115.005, 23.005) == {"a"}
    assert index.within(115.005, 23.005, 1000.0) == []


def test_remove() -> None:
    original = ZoneIndex([CircleZone("a", *QINGXI, 100.0), CircleZone("b", *QINGXI, 500.0)])
    smaller = original.remove("a")
    assert covered_keys(smaller, *QINGXI) == {"b"}
    assert smaller.keys() == ("b",)
    assert "a" not in smaller and "a" in original
    assert len(smaller.remove("b")) == 0
    with pytest.raises(KeyError):
        smaller.remove("a")


def a_zone(rng: np.random.Generator, key: str) -> Zone:
    """A zone near Qingxi; half of them the same circle, so that distances tie and the order
    of keys decides, in the batched path of a point with many candidates too."""
    lon, lat = QINGXI[0] + rng.uniform(-0.01, 0.01), QINGXI[1] + rng.uniform(-0.01, 0.01)
    kind = rng.integers(0, 4)
    if kind == 0:
        return CircleZone(key, *QINGXI, 300.0)
    if kind == 1:
        return PolygonZone(key, lon, lat, box(lon - 0.004, lat - 0.003, lon + 0.004, lat + 0.003))
    return CircleZone(key, lon, lat, float(rng.choice([100.0, 500.0, 1234.5])))


def a_key(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("abcdefgh"), 6).tolist())


def test_an_index_changed_again_and_again_answers_as_one_built_at_once() -> None:
    """changed() copies the unchanged zones' numbers, and moves the keys' order along
    instead of sorting the keys again: after any run of puts and removals it must answer
    exactly as an index built from the same zones does, ties included."""
    rng = np.random.default_rng(11)
    zones = {key: a_zone(rng, key) for key in {a_key(rng) for _ in range(90)}}
    index = ZoneIndex(zones.values())
    lons = np.append(QINGXI[0] + rng.uniform(-0.012, 0.012, 150), QINGXI[0])
    lats = np.append(QINGXI[1] + rng.uniform(-0.012, 0.012, 150), QINGXI[1])
    for step in range(80):
        # In turn: zones moved only (their keys and order kept), added only, removed only,
        # and all three at once.
        chosen = rng.permutation(sorted(zones))[: rng.integers(1, 6)].tolist()
        removed = chosen[: len(chosen) // 2] if step % 4 in (2, 3) else []
        moved = chosen[len(chosen) // 2 :] if step % 4 in (0, 3) else []
        new = {a_key(rng) for _ in range(rng.integers(1, 4))} - set(zones)
        put = [
            a_zone(rng, key)
            for key in [*moved, *(sorted(new, reverse=True) if step % 4 in (1, 3) else [])]
        ]
        index = index.changed(put, removed)
        for key in removed:
            del zones[key]
        zones.update((zone.key, zone) for zone in put)
        at_once = ZoneIndex(zones.values())
        assert len(index) == len(zones) and sorted(index.keys()) == sorted(zones)
        assert all(index.get(key) == zone for key, zone in zones.items())
        assert index.covering_many(lons, lats) == at_once.covering_many(lons, lats)
        for lon, lat in zip(lons.tolist(), lats.tolist(), strict=True):
            assert index.covering(lon, lat) == at_once.covering(lon, lat)
        assert index.within(*QINGXI, 2000.0) == at_once.within(*QINGXI, 2000.0)
    assert len(index.covering(*QINGXI)) >= 24  # the batched path, with its ties
    assert len({hit.distance_m for hit in index.covering(*QINGXI)}) < len(index.covering(*QINGXI))


def test_a_change_naming_a_key_twice_or_removing_a_missing_one_changes_nothing() -> None:
    index = ZoneIndex([CircleZone("a", *QINGXI, 100.0), CircleZone("b", *QINGXI, 500.0)])
    with pytest.raises(ZoneError, match="changed twice at once: a"):
        index.changed([CircleZone("a", *QINGXI, 50.0)], ["a"])
    with pytest.raises(ZoneError, match="changed twice at once: c"):
        index.changed([CircleZone("c", *QINGXI, 50.0), CircleZone("c", *QINGXI, 60.0)])
    with pytest.raises(KeyError):
        index.changed([CircleZone("c", *QINGXI, 50.0)], ["b", "missing"])
    assert covered_keys(index, *QINGXI) == {"a", "b"} and len(index) == 2


def test_empty_index() -> None:
    index = ZoneIndex()
    assert index.covering(*QINGXI) == []
    assert index.covering_many([1.0, 2.0], [3.0, 4.0]) == [[], []]
    assert index.within(*QINGXI, 1000.0) == []


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ZoneError, match="duplicate zone keys: a"):
        ZoneIndex([CircleZone("a", *QINGXI, 100.0), CircleZone("a", *QINGXI, 500.0)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: CircleZone("a", 114.0, 22.0, 0.0),
        lambda: CircleZone("a", 114.0, 22.0, -5.0),
        lambda: CircleZone("a", 114.0, 22.0, math.nan),
        lambda: CircleZone("a", 114.0, 91.0, 100.0),
        lambda: CircleZone("a", math.inf, 22.0, 100.0),
        lambda: CircleZone("a", 10**400, 22.0, 100.0),
        lambda: CircleZone("a", 114.0, 22.0, 10**400),
        lambda: CircleZone("", 114.0, 22.0, 100.0),
        lambda: PolygonZone("a", 114.0, 22.0, Polygon()),
    ],
)
def test_bad_zones_are_rejected(make: object) -> None:
    with pytest.raises(ZoneError):
        make()  # type: ignore[operator]


def test_bad_query_points_are_rejected() -> None:
    index = ZoneIndex([CircleZone("a", *QINGXI, 100.0)])
    with pytest.raises(CoordinateError) as caught:
        index.covering(math.nan, 22.0)
    assert caught.value.field == "lon"
    with pytest.raises(CoordinateError, match="at index 1") as caught:
        index.covering_many([114.0, 114.0], [22.0, 91.0])
    assert caught.value.field == "lat"
    with pytest.raises(ValueError, match="same length"):
        index.covering_many([114.0, 114.0], [22.0])
    with pytest.raises(ValueError):
        index.within(*QINGXI, -1.0)


def test_integers_too_large_for_a_float_are_refused_not_overflowed() -> None:
    index = ZoneIndex([CircleZone("a", *QINGXI, 100.0)])
    huge = 10**400
    with pytest.raises(CoordinateError, match="lon must be within") as caught:
        index.covering(huge, 22.0)
    with pytest.raises(CoordinateError, match="lat must be within") as caught:
        index.covering_many([114.0], [-huge])
    assert caught.value.field == "lat"
    with pytest.raises(ValueError, match="radius_m"):
        index.within(*QINGXI, huge)
    with pytest.raises(ValueError, match="radius_m"):
        geodesic_circle(*QINGXI, huge)


def test_zone_union_alias_covers_both_kinds() -> None:
    zones: list[Zone] = [
        CircleZone("a", *QINGXI, 100.0),
        PolygonZone("b", *QINGXI, box(114.0, 22.0, 115.0, 23.0)),
    ]
    assert [zone.key for zone in zones] == ["a", "b"]
