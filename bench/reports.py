"""Response-time reports over 100k and 1M incidents, on PostgreSQL and on SQLite.

Ours: ``GET /api/v1/reports/response-times`` (per-tier figures, nearest-rank percentiles, hops)
on a real server. Baseline: one SQL query computing the tier-1 P90 time to arrival over the same
rows: on PostgreSQL with ``percentile_cont`` through asyncpg, on SQLite (which has no ordered-set
aggregates) the value at the nearest rank, by ``ORDER BY ... LIMIT 1 OFFSET``, through the
standard library's ``sqlite3``. Rows are generated in the database: incidents over 29 days,
three chain tiers each, two dispatches each (tier 1 and tier 2), arrivals spread like a real
town's, a tenth never arriving.

Beside each size, an incident is reported while a report runs, and the time to its answer is
set against the same report made when nothing else runs: a report of the office must not hold
up an alert. Then incidents are reported at 20/s for the whole of one report, the stream of the
alert benchmark: their answers, and on SQLite how far the write-ahead log grows while the
report holds its snapshot (no checkpoint can pass it until the report ends).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
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

# The nearest rank, ⌈0.9·n⌉, of the tier-1 times to arrival (stored text, as the server writes
# it; julianday's ~20 µs of rounding is far below the 0.1 s the figures are compared to).
SQLITE_BASELINE = """
WITH d AS (
    SELECT (julianday(c.arrived_at) - julianday(i.reported_at)) * 86400.0 AS s
    FROM chain_tiers c JOIN incidents i ON i.id = c.incident_id
    WHERE c.tier = 1 AND c.arrived_at IS NOT NULL AND i.reported_at >= ? AND i.reported_at < ?
)
SELECT s FROM d ORDER BY s LIMIT 1 OFFSET (SELECT (count(*) * 9 + 9) / 10 - 1 FROM d)
"""

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


# SQLite: the same rows, made by one script in the database. random() is drawn once per row
# into a scratch table, as a column used twice would be drawn twice. Times are microseconds
# since the epoch, written as the server stores them: fixed-width UTC text.
def _text(us: str) -> str:
    return (
        f"strftime('%Y-%m-%d %H:%M:%S', ({us}) / 1000000, 'unixepoch')"
        f" || printf('.%06d', ({us}) % 1000000)"
    )


# A uniform draw in [0, 1) from random()'s 64-bit integer.
DRAW = "((random() & 1073741823) / 1073741824.0)"
DRAWN = ("lon", "lat", "never1", "never2", "never3", "at1", "at2", "at3", "accept", "spot")


SQLITE_ROWS = [
    "DROP TABLE IF EXISTS temp.drawn",
    f"""
    CREATE TEMP TABLE drawn AS
    WITH RECURSIVE g(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM g WHERE n < :last)
    SELECT n, :end_us - CAST({DRAW} * :span_us AS INTEGER) AS reported_us,
           {", ".join(f"{DRAW} AS {column}" for column in DRAWN)}
    FROM g
    """,
    f"""
    INSERT INTO incidents (id, reported_at, lon, lat, category, status, reported_by)
    SELECT printf('%032x', n), {_text("reported_us")}, 114.159 + lon * 0.1, 22.847 + lat * 0.1,
           'theft', 'closed', :operator
    FROM drawn
    """,
    f"""
    INSERT INTO chain_tiers (incident_id, tier, target_s, deadline, status, covered, arrived_at,
                             elapsed_s, breached_at, incident_reported_at)
    SELECT printf('%032x', n), tier, target, {_text("reported_us + target_us")},
           CASE WHEN secs IS NOT NULL AND secs <= target THEN 'met' ELSE 'breached' END, 1,
           CASE WHEN secs IS NOT NULL THEN {_text("reported_us + CAST(secs * 1e6 AS INTEGER)")}
           END,
           secs,
           CASE WHEN secs IS NULL OR secs > target THEN {_text("reported_us + target_us")} END,
           {_text("reported_us")}
    FROM (
        SELECT n, reported_us, tier, target, CAST(target * 1000000 AS INTEGER) AS target_us,
               CASE WHEN (CASE tier WHEN 1 THEN never1 WHEN 2 THEN never2 ELSE never3 END) < 0.1
                    THEN NULL
                    ELSE target * (0.3 + (CASE tier WHEN 1 THEN at1 WHEN 2 THEN at2 ELSE at3 END)
                                         * 0.9) END AS secs
        FROM drawn, (SELECT 1 AS tier, 60.0 AS target UNION ALL SELECT 2, 180.0
                     UNION ALL SELECT 3, 300.0)
    )
    """,
    f"""
    INSERT INTO dispatches (id, incident_id, team_id, tier, distance_m, alerted_at,
                            delivered_at, accepted_at, arrived_at, incident_reported_at)
    SELECT printf('%030x%02x', d.n, c.tier), c.incident_id,
           p.team_id,
           c.tier, 50 + d.spot * 400, c.incident_reported_at,
           {_text("d.reported_us + 300000")},
           {_text("d.reported_us + CAST((2 + d.accept * 8) * 1000000 AS INTEGER)")},
           c.arrived_at, c.incident_reported_at
    FROM drawn d
    JOIN chain_tiers c ON c.incident_id = printf('%032x', d.n) AND c.tier IN (1, 2)
    JOIN picks p
      ON p.tier = c.tier AND p.k = d.n % (CASE c.tier WHEN 1 THEN :teams1 ELSE :teams2 END)
    """,
    "DROP TABLE temp.drawn",
    "DROP TABLE temp.picks",
]


PICKS = "SELECT id FROM teams WHERE tier = ? ORDER BY id"


def generate_sqlite_rows(path: Path, first: int, count: int, end: datetime) -> None:
    """Incidents first+1 .. first+count, with their chain tiers and dispatches (SQLite)."""
    # Waits for a write of the server (a timer's, an escalation's) rather than fail at once.
    connection = sqlite3.connect(path, timeout=60)
    try:
        # Read to the end: a statement left unfinished holds its snapshot, and a write of this
        # connection after the server's would then fail with "database is locked" at once.
        operators = connection.execute("SELECT id FROM users WHERE role = 'operator'").fetchall()
        values = {
            "first": first + 1,
            "last": first + count,
            "end_us": int(end.timestamp() * 1_000_000),
            "span_us": DAYS * 86_400 * 1_000_000,
            "operator": operators[0][0],
        }
        # Each tier's teams numbered, for a dispatch's team by its incident's number.
        connection.execute("CREATE TEMP TABLE picks (tier INTEGER, k INTEGER, team_id TEXT)")
        for tier in (1, 2):
            teams = [r[0] for r in connection.execute(PICKS, (tier,))]
            values[f"teams{tier}"] = len(teams)
            connection.executemany(
                "INSERT INTO picks VALUES (?, ?, ?)", [(tier, k, t) for k, t in enumerate(teams)]
            )
        connection.execute("CREATE INDEX temp.ix_picks ON picks (tier, k)")
        # The inserts above began a transaction, and a read of the teams within it holds a
        # snapshot: ended here, the rows' transaction begins with its first write.
        connection.commit()
        with connection:
            for statement in SQLITE_ROWS:
                names = [k for k in values if f":{k}" in statement]
                connection.execute(statement, {k: values[k] for k in names})
        # A town's file is checkpointed as it grows; the benchmark's bulk insert is not, and the
        # first reads would otherwise walk a WAL of hundreds of megabytes.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def sqlite_p90(connection: sqlite3.Connection, start: datetime, end: datetime) -> float:
    # fetchall: the statement finished, the snapshot let go.
    rows = connection.execute(SQLITE_BASELINE, (_stored(start), _stored(end))).fetchall()
    return float(rows[0][0])


def _stored(moment: datetime) -> str:
    """A time as the server stores it on SQLite: UTC, fixed-width text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def run(report: Report, args: argparse.Namespace) -> None:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in ("postgresql", "sqlite"):
        if backend in backends:
            asyncio.run(_run(report, args, backend))


async def _run(report: Report, args: argparse.Namespace, backend: str) -> None:
    sizes = sorted(args.incidents)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=DAYS + 1)
    town = generate(stations=6, seed=5)
    place = (town.teams[0].lon, town.teams[0].lat)
    secret = secrets.token_urlsafe(32)
    with work_dir(args.work, "reports") as work:
        async with contextlib.AsyncExitStack() as stack:
            if backend == "postgresql":
                dsn = await stack.enter_async_context(scratch_postgres("bench_reports"))
                url = sqlalchemy_url(dsn)
            else:
                path = work / "reports.db"
                url = f"sqlite+aiosqlite:///{path}"
            seeded = await seed_database(url, town, secret=secret)
            env = {
                "DISPATCH_DATABASE_URL": url,
                "DISPATCH_SECRET_KEY": secret,
                "DISPATCH_SECRET_FILE": str(work / "secret.key"),
            }
            if backend == "postgresql":
                connection = await asyncpg.connect(dsn)
                stack.push_async_callback(connection.close)
                # asyncpg prepares the baseline, and after five runs PostgreSQL may keep one
                # generic plan for every period: at 1M incidents its nested loops took 7.5 s
                # where the period's own plan took 1.0. A query typed once is planned for its
                # values; so is ours.
                await connection.execute("SET plan_cache_mode = force_custom_plan")
                operator = await connection.fetchval("SELECT id FROM users WHERE role = 'operator'")

                async def add(have: int, count: int) -> None:
                    await generate_rows(connection, have, count, operator, end)

                async def baseline() -> float:
                    return float(await connection.fetchval(BASELINE, start, end))
            else:
                reader = sqlite3.connect(path, check_same_thread=False)
                stack.callback(reader.close)

                async def add(have: int, count: int) -> None:
                    await asyncio.to_thread(generate_sqlite_rows, path, have, count, end)

                async def baseline() -> float:
                    return await asyncio.to_thread(sqlite_p90, reader, start, end)

            served = await asyncio.to_thread(serve_dispatch, env, work, f"reports-{backend}")
            stack.callback(served.stop)
            results: dict[int, dict[str, Any]] = {}
            have = 0
            for size in sizes:
                began = time.monotonic()
                await add(have, size - have)
                have = size
                say(
                    f"    {backend}, {size} incidents generated in {time.monotonic() - began:.0f} s"
                )
                results[size] = await _measure(
                    Session(served.base_url, seeded.operator_token, place),
                    baseline,
                    start,
                    end,
                    args.reps,
                    None if backend == "postgresql" else path.with_name(path.name + "-wal"),
                )
                _say_measured(backend, size, results[size])
    _rows(report, backend, sizes, results)


def _say_measured(backend: str, size: int, r: dict[str, Any]) -> None:
    say(
        f"    {backend}, {size}: report {Figure.of(r['ours_s']).show('s')}, "
        f"baseline {Figure.of(r['baseline_s']).show('s')}; tier-1 P90 ours "
        f"{r['ours_p90']:.1f} s, baseline {r['baseline_p90']:.1f} s; an incident's answer "
        f"{Figure.of(r['during_s']).show('s')} during the report "
        f"({r['overlapped']} of {len(r['during_s'])} overlapped it, {len(r['refused'])} "
        f"refused), "
        f"{Figure.of(r['alone_s']).show('s')} alone"
    )
    stream = r["stream"]
    answers = stream["answers_s"][: stream["during"]]
    say(
        f"    {backend}, {size}: {len(answers)} incidents at {STREAM_PER_S}/s during "
        f"a report of {stream['report_s']:.1f} s answered in "
        f"{Figure.of([a * 1000 for a in answers]).show('ms')}, "
        f"{len(stream['refused'])} refused"
        + (
            f"; WAL {stream['wal_before'] / 2**20:.1f} MiB before, "
            f"{stream['wal_largest'] / 2**20:.1f} at most, {stream['wal_after'] / 2**20:.1f} "
            f"{STREAM_AFTER_S:.0f} s after"
            if backend == "sqlite"
            else ""
        )
    )


@dataclass(frozen=True)
class Session:
    """The served report's address, the operator's token and where incidents are reported."""

    base_url: str
    token: str
    place: tuple[float, float]


async def _measure(
    served: Session,
    baseline: Callable[[], Awaitable[float]],
    start: datetime,
    end: datetime,
    reps: int,
    wal: Path | None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {served.token}"}
    params = {"from": start.isoformat(), "to": end.isoformat()}
    ours_s, baseline_s = [], []
    ours_p90 = baseline_p90 = float("nan")
    async with httpx.AsyncClient(base_url=served.base_url, timeout=1800) as http:

        async def timed_report() -> tuple[float, float]:
            began = time.monotonic()
            reply = await http.get("/api/v1/reports/response-times", params=params, headers=headers)
            took = time.monotonic() - began
            reply.raise_for_status()
            tiers = {t["tier"]: t for t in reply.json()["totals"]}
            return took, tiers[1]["time_to_arrival"]["p90_s"]

        # One turn of each, not timed: both sides start from the same warm caches (ours has
        # its statements compiled and its pools open, the baseline its statement prepared).
        await timed_report()
        await baseline()
        for _ in range(reps):
            took, ours_p90 = await timed_report()
            ours_s.append(took)
            began = time.monotonic()
            baseline_p90 = await baseline()
            baseline_s.append(time.monotonic() - began)
        alone, during, overlapped, refused = await _incidents_beside_reports(
            http, served, timed_report, Figure.of(ours_s).median, reps
        )
        stream = await _stream_beside_a_report(http, served, timed_report, wal)
    return {
        "stream": stream,
        "ours_s": ours_s,
        "baseline_s": baseline_s,
        "ours_p90": ours_p90,
        "baseline_p90": baseline_p90,
        "alone_s": alone,
        "during_s": during,
        "overlapped": overlapped,
        "refused": refused,
    }


async def _timed_incident(http: httpx.AsyncClient, served: Session) -> tuple[float, int]:
    """An incident reported at the town's place: the time to its answer, and its status."""
    body = {"location": {"lon": served.place[0], "lat": served.place[1]}, "category": "fight"}
    headers = {"Authorization": f"Bearer {served.token}"}
    began = time.monotonic()
    reply = await http.post("/api/v1/incidents", json=body, headers=headers)
    return time.monotonic() - began, reply.status_code


async def _incidents_beside_reports(
    http: httpx.AsyncClient,
    served: Session,
    timed_report: Callable[[], Coroutine[Any, Any, tuple[float, float]]],
    report_s: float,
    reps: int,
) -> tuple[list[float], list[float], int, list[int]]:
    """An incident reported alone, then one reported a quarter into a report, ``reps`` times:
    the times to their answers, how many of the second answered before the report did, and
    the statuses of those refused (reported after the period, neither changes the report's
    figures)."""
    await _timed_incident(http, served)  # not timed: the same warm start as the report's
    alone, during, overlapped, refused = [], [], 0, []
    for _ in range(reps):
        took, status = await _timed_incident(http, served)
        if status != 201:
            raise RuntimeError(f"an incident reported alone was answered {status}")
        alone.append(took)
        running = asyncio.create_task(timed_report())
        await asyncio.sleep(report_s / 4)
        took, status = await _timed_incident(http, served)
        during.append(took)
        overlapped += not running.done()
        if status != 201:  # the server's answer when it waited too long for a connection
            refused.append(status)
        await running
    return alone, during, overlapped, refused


STREAM_PER_S = 20
STREAM_AFTER_S = 3.0


async def _stream_beside_a_report(
    http: httpx.AsyncClient,
    served: Session,
    timed_report: Callable[[], Coroutine[Any, Any, tuple[float, float]]],
    wal: Path | None,
) -> dict[str, Any]:
    """Incidents reported one after another at STREAM_PER_S for as long as one report runs,
    and STREAM_AFTER_S after it: the times to their answers (``during``: how many of them came
    while the report ran) and the statuses of those refused; on SQLite the write-ahead log's
    size before the stream, its largest while the report ran, and at the end."""

    def wal_size() -> int:
        return wal.stat().st_size if wal is not None and wal.exists() else 0

    before = largest = wal_size()
    answers: list[float] = []
    refused: list[int] = []
    began = time.monotonic()

    async def send() -> None:
        took, status = await _timed_incident(http, served)
        answers.append(took)
        if status != 201:
            refused.append(status)
        # Paced from the start, so a slow answer is followed by the ones it held up.
        await asyncio.sleep(max(0.0, began + len(answers) / STREAM_PER_S - time.monotonic()))

    running = asyncio.create_task(timed_report())
    while not running.done():
        await send()
        largest = max(largest, wal_size())
    report_s, _ = await running
    during = len(answers)
    # The stream goes on a while: its commits checkpoint the log the report no longer holds.
    ended = time.monotonic()
    while time.monotonic() - ended < STREAM_AFTER_S:
        await send()
    return {
        "during": during,
        "answers_s": answers,
        "refused": refused,
        "report_s": report_s,
        "wal_before": before,
        "wal_largest": largest,
        "wal_after": wal_size(),
    }


def _stream_rows(report: Report, case: str, stream: dict[str, Any], sqlite: bool) -> None:
    answers = stream["answers_s"][: stream["during"]]
    report.rows.append(
        Row(
            "reports",
            case,
            f"incidents at {STREAM_PER_S}/s during a report: time to an answer",
            "ms",
            Figure.of([a * 1000 for a in answers]),
            None,
            None,
            note=f"{len(answers)} incidents during a report of {stream['report_s']:.1f} s, "
            f"max {max(answers) * 1000:.0f} ms"
            + (f"; refused: {', '.join(map(str, stream['refused']))}" if stream["refused"] else ""),
        )
    )
    if sqlite:
        mib = 1024 * 1024
        report.rows.append(
            Row(
                "reports",
                case,
                "the write-ahead log while the report ran, those incidents written (baseline: "
                "before)",
                "MiB",
                Figure.of([stream["wal_largest"] / mib]),
                Figure.of([stream["wal_before"] / mib]),
                None,
                note=f"{stream['wal_after'] / mib:.1f} MiB {STREAM_AFTER_S:.0f} s after the "
                "report, the stream going on",
            )
        )


def _rows(
    report: Report, backend: str, sizes: list[int], results: dict[int, dict[str, Any]]
) -> None:
    baseline_name = "percentile_cont" if backend == "postgresql" else "nearest rank, one query"
    for size in sizes:
        r = results[size]
        ratio = ratios(r["ours_s"], r["baseline_s"])
        case = f"{size // 1000}k incidents, {backend}"
        report.rows.append(
            Row(
                "reports",
                case,
                "report time",
                "s",
                Figure.of(r["ours_s"]),
                Figure.of(r["baseline_s"]),
                ratio,
                # The target is PostgreSQL's; SQLite's figures are shown beside it.
                "≤ 3x" if backend == "postgresql" else "",
                ratio.median <= 3 if backend == "postgresql" else None,
                note=f"tier-1 P90 {r['ours_p90']:.1f} s (nearest rank) vs "
                f"{r['baseline_p90']:.1f} s ({baseline_name})",
            )
        )
        report.rows.append(
            Row(
                "reports",
                case,
                "an incident reported during the report: time to its answer (baseline: alone)",
                "s",
                Figure.of(r["during_s"]),
                Figure.of(r["alone_s"]),
                ratios(r["during_s"], r["alone_s"]),
                note=f"{r['overlapped']} of {len(r['during_s'])} answered while the report ran"
                + (f"; refused: {', '.join(map(str, r['refused']))}" if r["refused"] else ""),
            )
        )
        _stream_rows(report, case, r["stream"], backend == "sqlite")
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
                f"{small // 1000}k → {big // 1000}k incidents, {backend}",
                "time growth",
                "x",
                Figure.of([growth]),
                Figure.of([base_growth]),
                None,
                f"linear (≈ {rows:.0f}x)",
                growth <= rows * 1.5,
            )
        )
    report.raw.setdefault("reports", {})[backend] = {str(k): v for k, v in results.items()}
