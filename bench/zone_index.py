"""Timing of ZoneIndex at 1k / 10k / 100k zones (not collected by pytest).

Run from the repository root:  .venv/bin/python -m tests.geo.bench_zone_index

Two layouts: "town" keeps a 20 km square, so zones pile up as the count
grows (the worst case: more hits per point); "spread" keeps 25 zones per
square kilometre and grows the area instead.  Both mix 100 m and 500 m
circles with 5 % polygon zones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from shapely.geometry import box

from geo import CircleZone, PolygonZone, Zone, ZoneIndex

QINGXI = (114.159, 22.847)
METRES_PER_DEG_LAT = 110_700.0


def make_zones(count: int, side_m: float, rng: np.random.Generator) -> list[Zone]:
    half_lat = side_m / 2 / METRES_PER_DEG_LAT
    half_lon = half_lat / math.cos(math.radians(QINGXI[1]))
    lons = QINGXI[0] + rng.uniform(-half_lon, half_lon, count)
    lats = QINGXI[1] + rng.uniform(-half_lat, half_lat, count)
    radii = rng.choice([100.0, 500.0], count)
    zones: list[Zone] = []
    for i, (lon, lat, radius) in enumerate(
        zip(lons.tolist(), lats.tolist(), radii.tolist(), strict=True)
    ):
        if i % 20 == 0:
            zones.append(
                PolygonZone(
                    f"z{i}", lon, lat, box(lon - 0.003, lat - 0.003, lon + 0.003, lat + 0.003)
                )
            )
        else:
            zones.append(CircleZone(f"z{i}", lon, lat, radius))
    return zones


def seconds(action: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - start) / repeat


def bench(label: str, count: int, side_m: float) -> None:
    rng = np.random.default_rng(count)
    zones = make_zones(count, side_m, rng)
    build_s = seconds(lambda: ZoneIndex(zones))
    index = ZoneIndex(zones)
    half = side_m / 2 / METRES_PER_DEG_LAT
    lons = QINGXI[0] + rng.uniform(-half, half, 5000)
    lats = QINGXI[1] + rng.uniform(-half, half, 5000)
    pairs = list(zip(lons.tolist(), lats.tolist(), strict=True))
    mean_hits = sum(len(index.covering(lon, lat)) for lon, lat in pairs) / len(pairs)
    covering_us = (
        seconds(lambda: [index.covering(lon, lat) for lon, lat in pairs]) / len(pairs) * 1e6
    )
    many_us = seconds(lambda: index.covering_many(lons, lats)) / len(pairs) * 1e6
    within_us = (
        seconds(lambda: [index.within(lon, lat, 1000.0) for lon, lat in pairs[:1000]]) / 1000 * 1e6
    )
    replace_ms = seconds(lambda: index.replace(CircleZone("z1", *QINGXI, 100.0))) * 1e3
    print(
        f"{label:6} {count:>7} zones  build {build_s * 1e3:7.1f} ms  hits/pt {mean_hits:6.1f}  "
        f"covering {covering_us:6.1f} us/pt  covering_many {many_us:6.1f} us/pt  "
        f"within(1 km) {within_us:7.1f} us  replace {replace_ms:7.1f} ms"
    )


def main() -> None:
    for count in (1_000, 10_000, 100_000):
        bench("town", count, 20_000.0)
    for count in (1_000, 10_000, 100_000):
        bench("spread", count, math.sqrt(count / 25.0) * 1000.0)


if __name__ == "__main__":
    main()
