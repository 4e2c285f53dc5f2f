"""Conversions between WGS-84 and the Chinese GCJ-02 and BD-09 systems.

Chinese map providers publish coordinates in GCJ-02 (AMap, Tencent, Google
China) or BD-09 (Baidu), both deliberately shifted from WGS-84 by up to about
a kilometre.  Everything inside the server is WGS-84; these functions are the
only place where the shifted systems exist.

The published forward formulas are closed-form, but their inverses are not,
so the inverses here solve the forward formula by fixed-point iteration.
That keeps round trips well under a centimetre, where the usual one-step
inverse is off by one to two metres.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum

from geo.errors import CoordinateError

LonLat = tuple[float, float]


class CRS(StrEnum):
    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


# GCJ-02 is defined on the Krasovsky 1940 ellipsoid rather than on WGS-84.
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323

_BD_X_PI = math.pi * 3000.0 / 180.0
_BD_LON_SHIFT = 0.0065
_BD_LAT_SHIFT = 0.006

# The box the GCJ-02 algorithm itself uses to decide whether to shift at all.
_CHINA_WEST, _CHINA_EAST = 72.004, 137.8347
_CHINA_SOUTH, _CHINA_NORTH = 0.8293, 55.8271

# 1e-9 degrees is about 0.1 mm; each iteration gains roughly two digits, so
# the cap is only a guard against pathological input.
_CONVERGED_DEG = 1e-9
_MAX_ITERATIONS = 20


def in_china(lon: float, lat: float) -> bool:
    return _CHINA_WEST <= lon <= _CHINA_EAST and _CHINA_SOUTH <= lat <= _CHINA_NORTH


def finite_float(value: float) -> float | None:
    """``value`` as a float, or None unless it is a finite one: NaN, the infinities, and
    integers too large for a float (JSON allows any number of digits; ``float()`` and
    ``math.isfinite`` raise OverflowError on them)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_lon_lat(lon: float, lat: float) -> None:
    """Raise CoordinateError unless (lon, lat) is a finite, in-range position."""
    _check_axis("lon", lon, 180.0)
    _check_axis("lat", lat, 90.0)


def to_wgs84(lon: float, lat: float, crs: CRS) -> LonLat:
    system = _known_crs(crs)
    check_lon_lat(lon, lat)
    if system is CRS.WGS84:
        return float(lon), float(lat)
    _require_in_china(lon, lat, system)
    if system is CRS.BD09:
        lon, lat = _bd09_to_gcj02(lon, lat)
    return _gcj02_to_wgs84(lon, lat)


def from_wgs84(lon: float, lat: float, crs: CRS) -> LonLat:
    system = _known_crs(crs)
    check_lon_lat(lon, lat)
    if system is CRS.WGS84:
        return float(lon), float(lat)
    gcj_lon, gcj_lat = _wgs84_to_gcj02(lon, lat) if in_china(lon, lat) else (lon, lat)
    if system is CRS.BD09:
        return _gcj02_to_bd09(gcj_lon, gcj_lat)
    return float(gcj_lon), float(gcj_lat)


def _known_crs(crs: CRS) -> CRS:
    # Callers often pass the raw string from a request; StrEnum accepts it.
    try:
        return CRS(crs)
    except ValueError:
        known = ", ".join(member.value for member in CRS)
        raise CoordinateError(
            "crs", f"unknown coordinate system {crs!r} (expected one of {known})"
        ) from None


def _check_axis(field: str, value: float, limit: float) -> None:
    number = finite_float(value)
    # An integer too large for a float is a finite number, far out of range.
    if number is None and not isinstance(value, int):
        raise CoordinateError(field, f"{field} must be a finite number")
    if number is None or not -limit <= number <= limit:
        raise CoordinateError(field, f"{field} must be within [{-limit:g}, {limit:g}]")


def _require_in_china(lon: float, lat: float, system: CRS) -> None:
    # The shifted systems only exist inside China; a position outside means
    # the caller named the wrong system, and silently passing it through
    # would put the point in the wrong place.
    if not in_china(lon, lat):
        raise CoordinateError("crs", f"{system.value} coordinates must lie within China")


def _periodic_term(x: float) -> float:
    return (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0


def _north_shift_m(x: float, y: float) -> float:
    shift = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    shift += _periodic_term(x)
    shift += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    shift += (
        (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y / 30.0 * math.pi)) * 2.0 / 3.0
    )
    return shift


def _east_shift_m(x: float, y: float) -> float:
    shift = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    shift += _periodic_term(x)
    shift += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    shift += (
        (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    )
    return shift


def _wgs84_to_gcj02(lon: float, lat: float) -> LonLat:
    """The GCJ-02 forward formula without the in-China test."""
    # The series is expressed relative to (105 E, 35 N).
    east_m = _east_shift_m(lon - 105.0, lat - 35.0)
    north_m = _north_shift_m(lon - 105.0, lat - 35.0)
    phi = math.radians(lat)
    w = 1.0 - _KRASOVSKY_EE * math.sin(phi) ** 2
    prime_vertical_radius = _KRASOVSKY_A / math.sqrt(w)
    meridian_radius = _KRASOVSKY_A * (1.0 - _KRASOVSKY_EE) / (w * math.sqrt(w))
    d_lon = math.degrees(east_m / (prime_vertical_radius * math.cos(phi)))
    d_lat = math.degrees(north_m / meridian_radius)
    return lon + d_lon, lat + d_lat


def _gcj02_to_wgs84(lon: float, lat: float) -> LonLat:
    # The answer is within a kilometre of the input, where the box test is
    # irrelevant, so the raw formula is what must be inverted.
    return _solve(_wgs84_to_gcj02, (lon, lat), start=(lon, lat))


def _gcj02_to_bd09(lon: float, lat: float) -> LonLat:
    radius = math.hypot(lon, lat) + 0.00002 * math.sin(lat * _BD_X_PI)
    angle = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _BD_X_PI)
    return radius * math.cos(angle) + _BD_LON_SHIFT, radius * math.sin(angle) + _BD_LAT_SHIFT


def _bd09_to_gcj02(lon: float, lat: float) -> LonLat:
    # The published inverse evaluates its correction terms at the BD-09
    # position instead of the GCJ-02 one, which leaves an error of a few
    # centimetres; it is only a good starting point.
    x, y = lon - _BD_LON_SHIFT, lat - _BD_LAT_SHIFT
    radius = math.hypot(x, y) - 0.00002 * math.sin(y * _BD_X_PI)
    angle = math.atan2(y, x) - 0.000003 * math.cos(x * _BD_X_PI)
    estimate = (radius * math.cos(angle), radius * math.sin(angle))
    return _solve(_gcj02_to_bd09, (lon, lat), start=estimate)


def _solve(forward: Callable[[float, float], LonLat], target: LonLat, start: LonLat) -> LonLat:
    """Find p with forward(p) == target, for a forward that is a small shift.

    Because forward(p) - p varies slowly, p -= forward(p) - target is a
    contraction and converges quickly from any nearby start.
    """
    lon, lat = start
    for _ in range(_MAX_ITERATIONS):
        mapped_lon, mapped_lat = forward(lon, lat)
        step_lon, step_lat = mapped_lon - target[0], mapped_lat - target[1]
        lon, lat = lon - step_lon, lat - step_lat
        if max(abs(step_lon), abs(step_lat)) < _CONVERGED_DEG:
            break
    return lon, lat
