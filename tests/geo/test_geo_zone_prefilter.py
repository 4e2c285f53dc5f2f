"""The tangent-plane estimate that lets ZoneIndex skip circles a point is surely outside.

Dropping a candidate is only safe while the estimate's error is far below the drop
margin, radius * (1 + 1e-3) + 0.5 m; these tests measure that error against Geod.inv
and check that no hit is ever dropped, at the edge of every circle size it applies to.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyproj
import pytest
import shapely
from numpy.typing import NDArray

from geo import CircleZone, Hit, ZoneIndex
from geo.zones import (
    _PREFILTER_ABS_MARGIN_M,
    _PREFILTER_MAX_ABS_LAT,
    _PREFILTER_MAX_RADIUS_M,
    _PREFILTER_REL_MARGIN,
    _VECTORISE_FROM,
    _hits,
    _metres_per_degree,
    _metres_per_degree_at,
    _plane_distance_sq_m2,
)

GEOD = pyproj.Geod(ellps="WGS84")
MM = 0.001
# The worst relative error the comment in geo/zones.py states for the estimate.
STATED_WORST_RELATIVE_ERROR = 2e-5


def plane_estimate_m(
    centre_lons: NDArray[np.float64],
    centre_lats: NDArray[np.float64],
    lons: NDArray[np.float64],
    lats: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The estimate as the index computes it: zone scales halved, point scales as they are."""
    east_at_centres, _ = _metres_per_degree(centre_lats)
    east, north = _metres_per_degree(lats)
    squared = _plane_distance_sq_m2(
        centre_lons, centre_lats, 0.5 * east_at_centres, lons, lats, east, north
    )
    return np.sqrt(squared)


@pytest.mark.parametrize(
    ("west", "east", "south", "north"),
    [
        # China, from the Zengmu reef to Mohe.
        (73.0, 135.0, 3.8, 53.6),
        # Everywhere circles may be dropped.
        (-179.0, 179.0, -_PREFILTER_MAX_ABS_LAT, _PREFILTER_MAX_ABS_LAT),
    ],
)
def test_plane_estimate_error_is_far_below_the_drop_margin(
    west: float, east: float, south: float, north: float
) -> None:
    rng = np.random.default_rng(int(south * 10) % 1000)
    count = 200_000
    centre_lons = rng.uniform(west, east, count)
    centre_lats = rng.uniform(south, north, count)
    # Distances up to the largest radius the estimate is applied to, a quarter of
    # them exactly at it, where the error is largest, and a quarter within 2 m.
    distances = _PREFILTER_MAX_RADIUS_M * np.sqrt(rng.uniform(0.0, 1.0, count))
    distances[::4] = _PREFILTER_MAX_RADIUS_M
    distances[1::4] = rng.uniform(0.0, 2.0, count // 4)
    lons, lats, _ = GEOD.fwd(centre_lons, centre_lats, rng.uniform(-180, 180, count), distances)
    _, _, exact = GEOD.inv(centre_lons, centre_lats, lons, lats)

    estimate = plane_estimate_m(centre_lons, centre_lats, np.asarray(lons), np.asarray(lats))

    error = np.abs(estimate - exact)
    away = exact > 1.0
    worst_relative = float(np.max(error[away] / exact[away]))
    assert worst_relative < STATED_WORST_RELATIVE_ERROR
    assert worst_relative < _PREFILTER_REL_MARGIN / 50
    # Within a metre of the centre the absolute error is what matters.
    assert float(np.max(error[~away])) < _PREFILTER_ABS_MARGIN_M / 1000


def test_scalar_and_array_scales_agree() -> None:
    lats = np.linspace(-90.0, 90.0, 721)
    east, north = _metres_per_degree(lats)
    scalar = np.array([_metres_per_degree_at(lat) for lat in lats.tolist()])
    np.testing.assert_allclose(scalar[:, 0], east, rtol=1e-14, atol=1e-9)
    np.testing.assert_allclose(scalar[:, 1], north, rtol=1e-14)
    # At the equator: a degree of the equator and of the meridian on WGS-84.
    assert _metres_per_degree_at(0.0) == pytest.approx((111_319.491, 110_574.276), abs=1e-3)


def crowded_circles(
    rng: np.random.Generator, lon: float, lat: float, radius_m: float, count: int
) -> list[CircleZone]:
    """Circles of one radius whose centres lie within 1 % of the radius of each other."""
    azimuths = rng.uniform(-180.0, 180.0, count)
    offsets = rng.uniform(0.0, radius_m / 100, count)
    lons, lats, _ = GEOD.fwd(np.full(count, lon), np.full(count, lat), azimuths, offsets)
    return [
        CircleZone(f"c{i}", centre_lon, centre_lat, radius_m)
        for i, (centre_lon, centre_lat) in enumerate(
            zip(np.asarray(lons).tolist(), np.asarray(lats).tolist(), strict=True)
        )
    ]


def brute_force(circles: list[CircleZone], lon: float, lat: float) -> list[Hit]:
    hits = []
    for circle in circles:
        _, _, distance = GEOD.inv(circle.lon, circle.lat, lon, lat)
        if distance <= circle.radius_m:
            hits.append(Hit(circle.key, distance))
    return sorted(hits, key=lambda hit: (hit.distance_m, hit.key))


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (114.159, 22.847),
        (126.63, 45.75),
        (122.53, 52.97),
        (20.0, _PREFILTER_MAX_ABS_LAT - 0.01),
        (20.0, -_PREFILTER_MAX_ABS_LAT + 0.01),
        # Circles that are never dropped must still be right.
        (20.0, 75.0),
        (179.9, 10.0),
    ],
)
@pytest.mark.parametrize(
    "radius_m", [100.0, 5_000.0, _PREFILTER_MAX_RADIUS_M, _PREFILTER_MAX_RADIUS_M * 1.25]
)
def test_crowded_circle_edges_are_exact(lon: float, lat: float, radius_m: float) -> None:
    rng = np.random.default_rng([int(radius_m), int(lat * 100) % 100_000])
    circles = crowded_circles(rng, lon, lat, radius_m, 60)
    index = ZoneIndex(circles)
    points = []
    for circle in circles[:20]:
        for azimuth in rng.uniform(-180.0, 180.0, 4).tolist():
            for distance in (circle.radius_m - MM, circle.radius_m + MM):
                end_lon, end_lat, _ = GEOD.fwd(circle.lon, circle.lat, azimuth, distance)
                points.append((end_lon, end_lat))
    crowded = sum(len(index._tree.query(shapely.points(p))) >= _VECTORISE_FROM for p in points)
    assert crowded > len(points) // 2  # the vectorised path, where the estimate is used

    lons, lats = np.array(points).T
    many = index.covering_many(lons, lats)
    for (point_lon, point_lat), from_many in zip(points, many, strict=True):
        expected = brute_force(circles, point_lon, point_lat)
        assert index.covering(point_lon, point_lat) == expected
        assert from_many == expected


def test_estimate_drops_outside_candidates_and_keeps_every_hit() -> None:
    rng = np.random.default_rng(11)
    lons = 114.159 + rng.uniform(-0.1, 0.1, 10_000)
    lats = 22.847 + rng.uniform(-0.1, 0.1, 10_000)
    radii = rng.choice([100.0, 500.0], 10_000)
    index = ZoneIndex(
        CircleZone(f"z{i}", lon, lat, radius)
        for i, (lon, lat, radius) in enumerate(
            zip(lons.tolist(), lats.tolist(), radii.tolist(), strict=True)
        )
    )
    dropped = kept = 0
    for lon, lat in zip(rng.uniform(114.1, 114.2, 300), rng.uniform(22.8, 22.9, 300), strict=True):
        candidates = index._tree.query(shapely.points((lon, lat)))
        east, north = _metres_per_degree_at(lat)
        maybe = index._maybe_covered(
            candidates, lons[candidates], lats[candidates], lon, lat, east, north
        )
        _, _, exact = GEOD.inv(
            lons[candidates],
            lats[candidates],
            np.full(candidates.size, lon),
            np.full(candidates.size, lat),
        )
        assert maybe[exact <= radii[candidates]].all()
        dropped += int((~maybe).sum())
        kept += int(maybe.sum())
    # Guards against a vacuous pass: a box holds about 27 % more than its circle.
    assert dropped > 0.1 * (dropped + kept)


def test_hits_are_the_same_objects_as_built_by_hit() -> None:
    # _hits fills Hit's slots itself; a new field would need it updated.
    assert [field.name for field in dataclasses.fields(Hit)] == ["key", "distance_m"]
    keys, distances = ["b", "a", "c"], [2.5, 0.0, 1e-300]
    built = _hits(keys, distances)
    expected = [Hit(key, distance) for key, distance in zip(keys, distances, strict=True)]
    assert built == expected
    assert [type(hit) for hit in built] == [Hit] * 3
    assert [hash(hit) for hit in built] == [hash(hit) for hit in expected]
    assert [repr(hit) for hit in built] == [repr(hit) for hit in expected]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built[0].key = "x"  # type: ignore[misc]
    assert _hits([], []) == []
