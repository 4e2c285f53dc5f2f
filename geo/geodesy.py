"""Geodesic distances on the WGS-84 ellipsoid (Karney's algorithm via pyproj)."""

from __future__ import annotations

import functools

import numpy as np
import pyproj
from numpy.typing import ArrayLike, NDArray


@functools.cache
def wgs84_geod() -> pyproj.Geod:
    # Built on first use so importing geo stays cheap and free of side effects.
    return pyproj.Geod(ellps="WGS84")


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    _, _, distance = wgs84_geod().inv(lon1, lat1, lon2, lat2)
    return float(distance)


def distances_m(
    lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike
) -> NDArray[np.float64]:
    """Element-wise geodesic distances; inputs broadcast against each other."""
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (lon1, lat1, lon2, lat2))
    )
    shape = arrays[0].shape
    # pyproj wants equal-length, contiguous 1-D buffers.
    lon1_flat, lat1_flat, lon2_flat, lat2_flat = (np.ascontiguousarray(a.ravel()) for a in arrays)
    _, _, distance = wgs84_geod().inv(lon1_flat, lat1_flat, lon2_flat, lat2_flat)
    return np.asarray(distance, dtype=np.float64).reshape(shape)
