from __future__ import annotations

import math

import numpy as np
import pytest

from geo import CRS, CoordinateError, check_lon_lat, distance_m, from_wgs84, in_china, to_wgs84

QINGXI = (114.159, 22.847)
PARIS = (2.3522, 48.8566)

# Mainland China plus Hainan, kept clear of the algorithm's rectangular box
# edges, where a shifted point can land on the other side of the box.
CHINA_LONS = (73.5, 135.0)
CHINA_LATS = (18.0, 53.5)
ROUND_TRIP_LIMIT_M = 0.01


def random_china_points(count: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    lons = rng.uniform(*CHINA_LONS, count)
    lats = rng.uniform(*CHINA_LATS, count)
    return list(zip(lons.tolist(), lats.tolist(), strict=True))


def test_qingxi_gcj02_offset_is_about_600_m() -> None:
    shifted = from_wgs84(*QINGXI, CRS.GCJ02)
    assert 586.0 <= distance_m(*QINGXI, *shifted) <= 625.0


def test_qingxi_bd09_offset_is_about_1_2_km() -> None:
    shifted = from_wgs84(*QINGXI, CRS.BD09)
    assert 1150.0 <= distance_m(*QINGXI, *shifted) <= 1300.0


def test_gcj02_shifts_north_east_of_wgs84_near_qingxi() -> None:
    gcj_lon, gcj_lat = from_wgs84(*QINGXI, CRS.GCJ02)
    # Well-known behaviour in Guangdong: GCJ-02 sits east and slightly south.
    assert gcj_lon > QINGXI[0]
    assert gcj_lat < QINGXI[1]


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_round_trip_from_shifted_system_is_under_a_centimetre(crs: CRS) -> None:
    worst = max(
        distance_m(lon, lat, *from_wgs84(*to_wgs84(lon, lat, crs), crs))
        for lon, lat in random_china_points(2000, seed=11)
    )
    assert worst < ROUND_TRIP_LIMIT_M


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_round_trip_from_wgs84_is_under_a_centimetre(crs: CRS) -> None:
    worst = max(
        distance_m(lon, lat, *to_wgs84(*from_wgs84(lon, lat, crs), crs))
        for lon, lat in random_china_points(2000, seed=12)
    )
    assert worst < ROUND_TRIP_LIMIT_M


@pytest.mark.parametrize("lon", [105.0, 105.0 + 1e-9, 105.0 - 1e-7, 104.999])
def test_round_trip_at_the_series_origin_meridian(lon: float) -> None:
    # sqrt(|lon - 105|) in the series is not differentiable at 105 E, the
    # worst case for the fixed-point iteration.
    for crs in (CRS.GCJ02, CRS.BD09):
        back = from_wgs84(*to_wgs84(lon, 35.0, crs), crs)
        assert distance_m(lon, 35.0, *back) < ROUND_TRIP_LIMIT_M


def test_iterative_inverse_beats_one_step_inverse() -> None:
    gcj = from_wgs84(*QINGXI, CRS.GCJ02)
    one_step = (
        2 * gcj[0] - from_wgs84(*gcj, CRS.GCJ02)[0],
        2 * gcj[1] - from_wgs84(*gcj, CRS.GCJ02)[1],
    )
    assert distance_m(*QINGXI, *one_step) > 0.1
    assert distance_m(*QINGXI, *to_wgs84(*gcj, CRS.GCJ02)) < 1e-4


def test_wgs84_is_passed_through() -> None:
    assert to_wgs84(*QINGXI, CRS.WGS84) == QINGXI
    assert from_wgs84(*QINGXI, CRS.WGS84) == QINGXI
    assert to_wgs84(*PARIS, CRS.WGS84) == PARIS


def test_gcj02_equals_wgs84_outside_china() -> None:
    assert from_wgs84(*PARIS, CRS.GCJ02) == PARIS


def test_crs_given_as_plain_string_is_accepted() -> None:
    assert to_wgs84(*QINGXI, "gcj02") == to_wgs84(*QINGXI, CRS.GCJ02)  # type: ignore[arg-type]


def test_in_china_box() -> None:
    assert in_china(*QINGXI)
    assert in_china(116.397, 39.909)
    assert not in_china(*PARIS)
    assert in_china(72.004, 0.8293)
    assert in_china(137.8347, 55.8271)
    assert not in_china(72.0039, 30.0)
    assert not in_china(120.0, 55.8272)


@pytest.mark.parametrize(
    ("lon", "lat", "crs", "field"),
    [
        (math.nan, 22.8, CRS.WGS84, "lon"),
        (114.1, math.nan, CRS.GCJ02, "lat"),
        (math.inf, 22.8, CRS.BD09, "lon"),
        (114.1, -math.inf, CRS.WGS84, "lat"),
        (114.1, 91.0, CRS.WGS84, "lat"),
        (114.1, -90.5, CRS.GCJ02, "lat"),
        (180.5, 22.8, CRS.WGS84, "lon"),
        (-181.0, 22.8, CRS.BD09, "lon"),
        (*PARIS, CRS.GCJ02, "crs"),
        (*PARIS, CRS.BD09, "crs"),
    ],
)
def test_to_wgs84_rejects_bad_input(lon: float, lat: float, crs: CRS, field: str) -> None:
    with pytest.raises(CoordinateError) as caught:
        to_wgs84(lon, lat, crs)
    assert caught.value.field == field


def test_shifted_input_outside_china_says_so() -> None:
    with pytest.raises(CoordinateError, match="gcj02 coordinates must lie within China") as caught:
        to_wgs84(*PARIS, CRS.GCJ02)
    assert caught.value.message == "gcj02 coordinates must lie within China"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("lon", "lat"), [(math.nan, 22.8), (114.1, 91.0)])
def test_from_wgs84_rejects_bad_input(lon: float, lat: float) -> None:
    with pytest.raises(CoordinateError):
        from_wgs84(lon, lat, CRS.GCJ02)


def test_unknown_crs_is_rejected() -> None:
    with pytest.raises(CoordinateError) as caught:
        to_wgs84(*QINGXI, "utm50n")  # type: ignore[arg-type]
    assert caught.value.field == "crs"


# JSON allows any number of digits: a 400-digit integer is a number no float can hold.
TOO_LARGE_FOR_A_FLOAT = int("9" * 400)


@pytest.mark.parametrize("crs", list(CRS))
@pytest.mark.parametrize(
    ("lon", "lat", "field"),
    [(TOO_LARGE_FOR_A_FLOAT, 22.8, "lon"), (114.1, -TOO_LARGE_FOR_A_FLOAT, "lat")],
    ids=["lon", "lat"],
)
def test_integers_too_large_for_a_float_are_out_of_range(
    lon: float, lat: float, field: str, crs: CRS
) -> None:
    range_ = "[-180, 180]" if field == "lon" else "[-90, 90]"
    for convert in (to_wgs84, from_wgs84):
        with pytest.raises(CoordinateError) as caught:
            convert(lon, lat, crs)
        assert caught.value.field == field
        assert caught.value.message == f"{field} must be within {range_}"
    with pytest.raises(CoordinateError):
        check_lon_lat(lon, lat)
