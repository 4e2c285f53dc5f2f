"""Covering query: which zones cover a point, ours (geo.ZoneIndex) against PostGIS.

Zones are geodesic circles of 100 m and 500 m spread over a 20 km square (dense: many hits
per point) and over a 200 km square (sparse). Query points are half uniform and half placed
within 5 cm of a zone's boundary, inside or out, so the decisions that matter get tested.

Baseline: PostGIS ``ST_DWithin`` on ``geography`` with a GiST index, one query a point through
asyncpg. Truth: ``pyproj.Geod(ellps="WGS84").inv`` on every zone near the point.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import numpy as np
from numpy.typing import NDArray
from shapely.geometry import box

from bench.common import Figure, Report, Row, percentile, ratios, say, scratch_postgres
from geo import CircleZone, PolygonZone, Zone, ZoneIndex
from geo.geodesy import wgs84_geod

QINGXI = (114.159, 22.847)
METRES_PER_DEG_LAT = 110_700.0
BOUNDARY_BAND_M = 0.05
MAX_RADIUS_M = 500.0


@dataclass(frozen=True)
class Layout:
    zones: int
    side_m: float

    @property
    def label(self) -> str:
        return f"{self.zones // 1000}k zones / {self.side_m / 1000:.0f} km"


@dataclass
class Town:
    keys: list[str]
    lons: NDArray[np.float64]
    lats: NDArray[np.float64]
    radii: NDArray[np.float64]

    def zones(self) -> list[Zone]:
        return [
            CircleZone(k, lon, lat, r)
            for k, lon, lat, r in zip(
                self.keys, self.lons.tolist(), self.lats.tolist(), self.radii.tolist(), strict=True
            )
        ]


def make_town(layout: Layout, rng: np.random.Generator) -> Town:
    half_lat = layout.side_m / 2 / METRES_PER_DEG_LAT
    half_lon = half_lat / math.cos(math.radians(QINGXI[1]))
    lons = QINGXI[0] + rng.uniform(-half_lon, half_lon, layout.zones)
    lats = QINGXI[1] + rng.uniform(-half_lat, half_lat, layout.zones)
    radii = rng.choice([100.0, 500.0], layout.zones)
    keys = [f"z{i:06d}" for i in range(layout.zones)]
    return Town(keys, lons, lats, radii)


def query_points(
    town: Town, layout: Layout, count: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Half uniform over the square, half within BOUNDARY_BAND_M of some zone's edge."""
    uniform = count // 2
    half_lat = layout.side_m / 2 / METRES_PER_DEG_LAT
    half_lon = half_lat / math.cos(math.radians(QINGXI[1]))
    lons = QINGXI[0] + rng.uniform(-half_lon, half_lon, uniform)
    lats = QINGXI[1] + rng.uniform(-half_lat, half_lat, uniform)
    near = count - uniform
    chosen = rng.integers(0, len(town.keys), near)
    azimuths = rng.uniform(-180.0, 180.0, near)
    offsets = rng.uniform(-BOUNDARY_BAND_M, BOUNDARY_BAND_M, near)
    edge_lons, edge_lats, _ = wgs84_geod().fwd(
        town.lons[chosen], town.lats[chosen], azimuths, town.radii[chosen] + offsets
    )
    return (
        np.concatenate([lons, np.asarray(edge_lons)]),
        np.concatenate([lats, np.asarray(edge_lats)]),
    )


def truth(town: Town, lons: NDArray[np.float64], lats: NDArray[np.float64]) -> list[set[str]]:
    """For each point the keys of zones covering it, by Geod.inv on every zone nearby."""
    order = np.argsort(town.lats)
    sorted_lats = town.lats[order]
    reach_lat = (MAX_RADIUS_M + 100) / 100_000.0  # degrees; a degree is > 100 km everywhere here
    reach_lon = reach_lat / math.cos(math.radians(QINGXI[1] + 2))
    inverse = wgs84_geod().inv
    found: list[set[str]] = []
    for lon, lat in zip(lons.tolist(), lats.tolist(), strict=True):
        lo, hi = np.searchsorted(sorted_lats, [lat - reach_lat, lat + reach_lat])
        near = order[lo:hi]
        near = near[np.abs(town.lons[near] - lon) <= reach_lon]
        if near.size == 0:
            found.append(set())
            continue
        _, _, distances = inverse(
            town.lons[near], town.lats[near], np.full(near.size, lon), np.full(near.size, lat)
        )
        inside = near[np.asarray(distances) <= town.radii[near]]
        found.append({town.keys[i] for i in inside.tolist()})
    return found


def differing(a: list[set[str]], b: list[set[str]]) -> int:
    """Point-zone decisions on which two answers disagree."""
    return sum(len(x ^ y) for x, y in zip(a, b, strict=True))


def latencies_us(
    query: Callable[[float, float], object], points: list[tuple[float, float]]
) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for lon, lat in points:
        start = clock()
        query(lon, lat)
        out.append((clock() - start) / 1000.0)
    return out


# ---------------------------------------------------------------- PostGIS


def postgis_available() -> bool:
    """Whether PostgreSQL offers the postgis extension; tries Debian's package if not."""
    try:
        return asyncio.run(_has_postgis())
    except Exception:
        return False


async def _has_postgis() -> bool:
    from bench.common import PG_ADMIN_DSN

    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        row = await connection.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
        )
        return bool(row)
    finally:
        await connection.close()


def ensure_postgis(report: Report) -> bool:
    if postgis_available():
        return True
    say("  installing postgresql-15-postgis-3 from Debian's packages ...")
    for command in (
        ["apt-get", "install", "-y", "-qq", "postgresql-15-postgis-3"],
        ["sh", "-c", "apt-get update -qq && apt-get install -y -qq postgresql-15-postgis-3"],
    ):
        try:
            subprocess.run(
                command,
                check=True,
                capture_output=True,
                timeout=600,
                env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if postgis_available():
            return True
    report.note("PostGIS could not be installed: the covering-query baseline is skipped")
    return False


class PostGIS:
    """The zones in a PostGIS table of geography centres with a GiST index."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.statement: asyncpg.PreparedStatement | None = None

    async def load(self, town: Town) -> None:
        c = self.connection
        await c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        await c.execute("DROP TABLE IF EXISTS zones")
        await c.execute(
            "CREATE TABLE zones (key text PRIMARY KEY, lon float8, lat float8, radius_m float8,"
            " centre geography(Point, 4326))"
        )
        records = zip(
            town.keys, town.lons.tolist(), town.lats.tolist(), town.radii.tolist(), strict=True
        )
        await c.copy_records_to_table(
            "zones", records=list(records), columns=["key", "lon", "lat", "radius_m"]
        )
        await c.execute("UPDATE zones SET centre = ST_SetSRID(ST_MakePoint(lon, lat), 4326)")
        await c.execute("CREATE INDEX zones_centre ON zones USING gist (centre)")
        await c.execute("ANALYZE zones")
        # The constant reach lets the GiST index prune; the per-zone radius decides.
        self.statement = await c.prepare(
            "SELECT key FROM zones"
            " WHERE ST_DWithin(centre, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $3)"
            " AND ST_DWithin(centre, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, radius_m)"
        )

    async def covering(self, lon: float, lat: float) -> set[str]:
        assert self.statement is not None
        rows = await self.statement.fetch(lon, lat, MAX_RADIUS_M)
        return {r[0] for r in rows}

    async def latencies_us(self, points: list[tuple[float, float]]) -> list[float]:
        clock = time.perf_counter_ns
        out = []
        for lon, lat in points:
            start = clock()
            await self.covering(lon, lat)
            out.append((clock() - start) / 1000.0)
        return out


# ---------------------------------------------------------------- the benchmark


def run(report: Report, sizes: list[int], reps: int, points: int, use_postgis: bool) -> None:
    layouts = [Layout(n, side) for side in (20_000.0, 200_000.0) for n in sizes]
    postgis = use_postgis and ensure_postgis(report)
    asyncio.run(_run(report, layouts, reps, points, postgis))
    _zone_index_extras(report, sizes)


async def _run(report: Report, layouts: list[Layout], reps: int, count: int, postgis: bool) -> None:
    async with scratch_postgres("bench_covering") as dsn:
        connection = await asyncpg.connect(dsn) if postgis else None
        try:
            for layout in layouts:
                await _one_layout(report, layout, reps, count, connection)
        finally:
            if connection is not None:
                await connection.close()


async def _one_layout(
    report: Report,
    layout: Layout,
    reps: int,
    count: int,
    connection: asyncpg.Connection | None,
) -> None:
    say(f"  covering: {layout.label}")
    rng = np.random.default_rng(layout.zones + int(layout.side_m))
    town = make_town(layout, rng)
    index = ZoneIndex(town.zones())
    lons, lats = query_points(town, layout, count, rng)
    pairs = list(zip(lons.tolist(), lats.tolist(), strict=True))

    ours_sets = [{h.key for h in index.covering(lon, lat)} for lon, lat in pairs]
    many_sets = [{h.key for h in hits} for hits in index.covering_many(lons, lats)]
    exact = truth(town, lons, lats)
    vs_geod = differing(ours_sets, exact) + differing(many_sets, exact)
    hits_per_point = sum(len(s) for s in exact) / len(exact)

    ours_p50, ours_p99, batch_ms = [], [], []
    for _ in range(reps):
        sample = latencies_us(index.covering, pairs)
        ours_p50.append(percentile(sample, 50))
        ours_p99.append(percentile(sample, 99))
        start = time.perf_counter()
        index.covering_many(lons, lats)
        batch_ms.append((time.perf_counter() - start) * 1000)

    base_p50: list[float] = []
    base_p99: list[float] = []
    base_batch_ms: list[float] = []
    vs_postgis: int | None = None
    if connection is not None:
        pg = PostGIS(connection)
        await pg.load(town)
        pg_sets = [await pg.covering(lon, lat) for lon, lat in pairs]
        vs_postgis = differing(ours_sets, pg_sets)
        pg_vs_geod = differing(pg_sets, exact)
        if pg_vs_geod:
            report.note(f"{layout.label}: PostGIS differs from Geod on {pg_vs_geod} decisions")
        for _ in range(reps):
            start = time.perf_counter()
            sample = await pg.latencies_us(pairs)
            base_batch_ms.append((time.perf_counter() - start) * 1000)
            base_p50.append(percentile(sample, 50))
            base_p99.append(percentile(sample, 99))

    case = f"{layout.label}, {hits_per_point:.1f} hits/pt"
    has_base = connection is not None
    big = layout.zones >= 100_000
    p50_ratio = ratios(ours_p50, base_p50) if has_base else None
    report.rows.append(
        Row(
            "covering",
            case,
            "per point p50",
            "µs",
            Figure.of(ours_p50),
            Figure.of(base_p50) if has_base else None,
            p50_ratio,
            "≤ 0.2x PostGIS" if big else "",
            (p50_ratio.median <= 0.2) if (big and p50_ratio and p50_ratio.reps) else None,
        )
    )
    report.rows.append(
        Row(
            "covering",
            case,
            "per point p99",
            "µs",
            Figure.of(ours_p99),
            Figure.of(base_p99) if has_base else None,
            ratios(ours_p99, base_p99) if has_base else None,
        )
    )
    report.rows.append(
        Row(
            "covering",
            case,
            f"batch of {count} pts",
            "ms",
            Figure.of(batch_ms),
            Figure.of(base_batch_ms) if has_base else None,
            ratios(batch_ms, base_batch_ms) if has_base else None,
            note="baseline: one query a point",
        )
    )
    disagreements = vs_geod + (vs_postgis or 0)
    report.rows.append(
        Row(
            "covering",
            case,
            "decisions ≠ Geod / PostGIS",
            "",
            Figure.of([float(vs_geod)]),
            Figure.of([float(vs_postgis)]) if vs_postgis is not None else None,
            None,
            "0",
            disagreements == 0,
            note=f"over {count} points x all zones; left: vs Geod, right: vs PostGIS",
        )
    )
    report.raw.setdefault("covering", []).append(
        {
            "layout": layout.label,
            "zones": layout.zones,
            "side_m": layout.side_m,
            "points": count,
            "hits_per_point": hits_per_point,
            "ours_p50_us": ours_p50,
            "ours_p99_us": ours_p99,
            "ours_batch_ms": batch_ms,
            "postgis_p50_us": base_p50,
            "postgis_p99_us": base_p99,
            "postgis_batch_ms": base_batch_ms,
            "differ_from_geod": vs_geod,
            "differ_from_postgis": vs_postgis,
        }
    )


# ---------------------------------------------------------------- index upkeep


def _zone_index_extras(report: Report, sizes: list[int]) -> None:
    """Build, change and ring queries of the index, with 5 % polygon zones in the mix."""
    for count in sizes:
        rng = np.random.default_rng(count)
        zones = _mixed_zones(count, 20_000.0, rng)
        start = time.perf_counter()
        index = ZoneIndex(zones)
        build = Figure.of([(time.perf_counter() - start) * 1000])
        changes = _zone_changes(index, zones, np.random.default_rng(count + 1))
        half = 10_000.0 / METRES_PER_DEG_LAT
        lons = QINGXI[0] + rng.uniform(-half, half, 1000)
        lats = QINGXI[1] + rng.uniform(-half, half, 1000)
        start = time.perf_counter()
        for lon, lat in zip(lons.tolist(), lats.tolist(), strict=True):
            index.within(lon, lat, 1000.0)
        within = Figure.of([(time.perf_counter() - start) / 1000 * 1e6])
        case = f"{count // 1000}k zones / 20 km, 5% polygons"
        for metric, figure, unit in (
            ("index build", build, "ms"),
            *changes,
            ("within 1 km, per point", within, "µs"),
        ):
            report.rows.append(Row("zone index", case, metric, unit, figure))


# Each change is timed this many times (a new index from the same one each time).
CHANGE_REPS = 5


def _zone_changes(
    index: ZoneIndex, zones: list[Zone], rng: np.random.Generator
) -> list[tuple[str, Figure, str]]:
    """A team moved, added or retired, and a catch-up's hundred changes at once (half moved,
    a quarter added, a quarter retired): each a new index from ``index``, in ms."""
    picked = [zones[i].key for i in rng.choice(len(zones), 75, replace=False).tolist()]
    moved = [CircleZone(key, *QINGXI, 100.0) for key in picked[:50]]
    added = [CircleZone(f"new{i}", *QINGXI, 500.0) for i in range(25)]
    retired = picked[50:]
    timed: tuple[tuple[str, Callable[[], ZoneIndex]], ...] = (
        ("replace one zone", lambda: index.replace(moved[0])),
        ("add one zone", lambda: index.replace(added[0])),
        ("remove one zone", lambda: index.remove(retired[0])),
        ("100 changes at once", lambda: index.changed([*moved, *added], retired)),
    )
    figures = []
    for metric, change in timed:
        times = []
        for _ in range(CHANGE_REPS):
            start = time.perf_counter()
            change()
            times.append((time.perf_counter() - start) * 1000)
        figures.append((metric, Figure.of(times), "ms"))
    return figures


def _mixed_zones(count: int, side_m: float, rng: np.random.Generator) -> list[Zone]:
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
            square = box(lon - 0.003, lat - 0.003, lon + 0.003, lat + 0.003)
            zones.append(PolygonZone(f"z{i}", lon, lat, square))
        else:
            zones.append(CircleZone(f"z{i}", lon, lat, radius))
    return zones
