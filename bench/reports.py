"""Response-time reports over 100k and 1M incidents on PostgreSQL.

Ours: ``GET /api/v1/reports/response-times`` (per-tier figures, nearest-rank percentiles, hops)
on a real server. Baseline: one SQL query computing the tier-1 P90 time to arrival with
``percentile_cont`` over the same rows, through asyncpg. Rows are generated in the database
with ``generate_series``: incidents over 29 days, three chain tiers each, two dispatches each
(tier 1 and tier 2), arrivals spread like a real town's, a tenth never arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from bench.common import (
    Figure,
    Report,
    Row,
    ratios,
    say,
    scratch_postgres,
    serve_dispatch,
    sqlalchemy_url,
    work_dir,
)
from dispatch.simulate.seed import seed_database
from dispatch.simulate.town import generate

DAYS = 29

BASELINE = """
SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM c.arrived_at - i.reported_at))
FROM chain_tiers c JOIN incidents i ON i.id = c.incident_id
WHERE c.tier = 1 AND c.arrived_at IS NOT NULL AND i.reported_at >= $1 AND i.reported_at < $2
"""


async def generate_rows(
    connection: asyncpg.Connection, first: int, count: int, operator: str, end: datetime
) -> None:
    """Incidents first+1 .. first+count, with their chain tiers and dispatches."""
    teams = await connection.fetch("SELECT id, tier FROM teams ORDER BY id")
    tier1 = [r["id"] for r in teams if r["tier"] == 1]
    tier2 = [r["id"] for r in teams if r["tier"] == 2]
    await connection.execute(
        """
        INSERT INTO incidents (id, reported_at, lon, lat, category, description, status,
                               closed_at, reported_by)
        SELECT md5(g::text), $3::timestamptz - (random() * $4) * interval '1 day',
               114.159 + random() * 0.1, 22.847 + random() * 0.1, 'theft', NULL, 'closed',
               NULL, $5
        FROM generate_series($1::bigint, $2::bigint) AS g
        """,
        first + 1,
        first + count,
        end,
        float(DAYS),
        operator,
    )
    # Arrival seconds: tier 1 mostly within a minute, a tail beyond; a tenth never arrives.
    await connection.execute(
        """
        WITH i AS (
            SELECT id, reported_at FROM incidents
            WHERE id IN (SELECT md5(g::text) FROM generate_series($1::bigint, $2::bigint) g)
        ), t AS (
            SELECT i.id, i.reported_at, tier, target,
                   CASE WHEN random() < 0.1 THEN NULL
                        ELSE (target * (0.3 + random() * 0.9)) END AS secs
            FROM i, (VALUES (1, 60.0), (2, 180.0), (3, 300.0)) AS tiers(tier, target)
        )
        INSERT INTO chain_tiers (incident_id, tier, target_s, deadline, status, covered,
                                 arrived_at, elapsed_s, breached_at, incident_reported_at)
        SELECT id, tier, target, reported_at + target * interval '1 second',
               CASE WHEN secs IS NOT NULL AND secs <= target THEN 'met' ELSE 'breached' END,
               true, reported_at + secs * interval '1 second', secs,
               CASE WHEN secs IS NULL OR secs > target
                    THEN reported_at + target * interval '1 second' END,
               reported_at
        FROM t
        """,
        first + 1,
        first + count,
    )
    await connection.execute(
        """
        INSERT INTO dispatches (id, incident_id, team_id, tier, distance_m, alerted_at,
                                delivered_at, accepted_at, arrived_at, incident_reported_at)
        SELECT md5(c.incident_id || c.tier::text), c.incident_id,
               CASE WHEN c.tier = 1 THEN ($3::text[])[1 + (hashtext(c.incident_id) & 1023)
                                                        % array_length($3::text[], 1)]
                    ELSE ($4::text[])[1 + (hashtext(c.incident_id) & 1023)
                                         % array_length($4::text[], 1)] END,
               c.tier, 50 + random() * 400, i.reported_at,
               i.reported_at + interval '300 milliseconds',
               i.reported_at + (2 + random() * 8) * interval '1 second',
               c.arrived_at, i.reported_at
        FROM chain_tiers c JOIN incidents i ON i.id = c.incident_id
        WHERE c.tier IN (1, 2)
          AND c.incident_id IN (SELECT md5(g::text) FROM generate_series($1::bigint, $2::bigint) g)
        """,
        first + 1,
        first + count,
        tier1,
        tier2,
    )
    # A town's database is vacuumed by autovacuum long before anyone reports on it. Right after
    # the bulk insert, the first statement to read each row would set its hint bits and write
    # its page, so the first repetition, whichever side reads first, would time the load.
    await connection.execute("VACUUM (ANALYZE) incidents, chain_tiers, dispatches")


def run(report: Report, args: argparse.Namespace) -> None:
    asyncio.run(_run(report, args))


async def _run(report: Report, args: argparse.Namespace) -> None:
    sizes = sorted(args.incidents)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=DAYS + 1)
    results: dict[int, dict[str, Any]] = {}
    with work_dir(args.work, "reports") as work:
        async with scratch_postgres("bench_reports") as dsn:
            secret = secrets.token_urlsafe(32)
            url = sqlalchemy_url(dsn)
            seeded = await seed_database(url, generate(stations=6, seed=5), secret=secret)
            connection = await asyncpg.connect(dsn)
            # asyncpg prepares the baseline, and after five runs PostgreSQL may keep one generic
            # plan for every period: at 1M incidents its nested loops took 7.5 s where the
            # period's own plan took 1.0. A query typed once is planned for its values; so is ours.
            await connection.execute("SET plan_cache_mode = force_custom_plan")
            operator = await connection.fetchval("SELECT id FROM users WHERE role = 'operator'")
            env = {
                "DISPATCH_DATABASE_URL": url,
                "DISPATCH_SECRET_KEY": secret,
                "DISPATCH_SECRET_FILE": str(work / "secret.key"),
            }
            served = await asyncio.to_thread(serve_dispatch, env, work, "reports")
            try:
                have = 0
                for size in sizes:
                    began = time.monotonic()
                    await generate_rows(connection, have, size - have, operator, end)
                    have = size
                    say(f"    {size} incidents generated in {time.monotonic() - began:.0f} s")
                    results[size] = await _measure(
                        served.base_url, seeded.operator_token, connection, start, end, args.reps
                    )
                    r = results[size]
                    say(
                        f"    {size}: report {Figure.of(r['ours_s']).show('s')}, "
                        f"percentile_cont {Figure.of(r['baseline_s']).show('s')}; "
                        f"tier-1 P90 ours {r['ours_p90']:.1f} s, percentile_cont "
                        f"{r['baseline_p90']:.1f} s"
                    )
            finally:
                served.stop()
                await connection.close()
    _rows(report, sizes, results)


async def _measure(
    base_url: str,
    token: str,
    connection: asyncpg.Connection,
    start: datetime,
    end: datetime,
    reps: int,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    params = {"from": start.isoformat(), "to": end.isoformat()}
    ours_s, baseline_s = [], []
    ours_p90 = baseline_p90 = float("nan")
    async with httpx.AsyncClient(base_url=base_url, timeout=1800) as http:
        # One turn of each, not timed: both sides start from the same warm caches (ours has
        # its statements compiled and its pools open, the baseline its statement prepared).
        warm = await http.get("/api/v1/reports/response-times", params=params, headers=headers)
        warm.raise_for_status()
        await connection.fetchval(BASELINE, start, end)
        for _ in range(reps):
            began = time.monotonic()
            reply = await http.get("/api/v1/reports/response-times", params=params, headers=headers)
            ours_s.append(time.monotonic() - began)
            reply.raise_for_status()
            tiers = {t["tier"]: t for t in reply.json()["totals"]}
            ours_p90 = tiers[1]["time_to_arrival"]["p90_s"]
            began = time.monotonic()
            baseline_p90 = float(await connection.fetchval(BASELINE, start, end))
            baseline_s.append(time.monotonic() - began)
    return {
        "ours_s": ours_s,
        "baseline_s": baseline_s,
        "ours_p90": ours_p90,
        "baseline_p90": baseline_p90,
    }


def _rows(report: Report, sizes: list[int], results: dict[int, dict[str, Any]]) -> None:
    for size in sizes:
        r = results[size]
        ratio = ratios(r["ours_s"], r["baseline_s"])
        report.rows.append(
            Row(
                "reports",
                f"{size // 1000}k incidents, postgresql",
                "report time",
                "s",
                Figure.of(r["ours_s"]),
                Figure.of(r["baseline_s"]),
                ratio,
                "≤ 3x",
                ratio.median <= 3,
                note=f"tier-1 P90 {r['ours_p90']:.1f} s (nearest rank) vs "
                f"{r['baseline_p90']:.1f} s (percentile_cont)",
            )
        )
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        growth = (
            Figure.of(results[big]["ours_s"]).median / Figure.of(results[small]["ours_s"]).median
        )
        base_growth = (
            Figure.of(results[big]["baseline_s"]).median
            / Figure.of(results[small]["baseline_s"]).median
        )
        rows = big / small
        report.rows.append(
            Row(
                "reports",
                f"{small // 1000}k → {big // 1000}k incidents",
                "time growth",
                "x",
                Figure.of([growth]),
                Figure.of([base_growth]),
                None,
                f"linear (≈ {rows:.0f}x)",
                growth <= rows * 1.5,
            )
        )
    report.raw["reports"] = {str(k): v for k, v in results.items()}
