from __future__ import annotations

import numpy as np
import pytest

from geo import distance_m, distances_m
from geo.geodesy import wgs84_geod


def test_one_degree_of_latitude_at_the_equator() -> None:
    # The WGS-84 meridian arc from 0 to 1 degree north.
    assert distance_m(0.0, 0.0, 0.0, 1.0) == pytest.approx(110574.389, abs=1e-3)


def test_distance_is_zero_for_the_same_point() -> None:
    assert distance_m(114.159, 22.847, 114.159, 22.847) == 0.0


def test_distances_match_scalar_distances() -> None:
    rng = np.random.default_rng(3)
    lon1, lat1 = rng.uniform(113, 115, 50), rng.uniform(22, 23, 50)
    lon2, lat2 = rng.uniform(113, 115, 50), rng.uniform(22, 23, 50)
    vectorised = distances_m(lon1, lat1, lon2, lat2)
    scalar = [distance_m(*p) for p in zip(lon1, lat1, lon2, lat2, strict=True)]
    assert vectorised.tolist() == scalar


def test_distances_broadcast_and_keep_shape() -> None:
    lons = np.array([[114.0, 114.1], [114.2, 114.3]])
    result = distances_m(lons, 22.8, 114.0, 22.8)
    assert result.shape == (2, 2)
    assert result[0, 0] == 0.0
    assert result[1, 1] == pytest.approx(distance_m(114.3, 22.8, 114.0, 22.8))


def test_geod_is_built_once() -> None:
    assert wgs84_geod() is wgs84_geod()
