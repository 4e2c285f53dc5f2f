"""Cold and warm: one report at a time, served, right after another and after a pause.

The alert benchmark streams 20 reports a second, one every 50 ms, and a report takes less than
that: between two reports the server, PostgreSQL and the clients sleep. On this box a process
that slept a few tens of milliseconds runs its next work slower than work that follows work
at once: its data has left the CPU's caches meanwhile (work that stays in the first-level
cache slows by a tenth, work that walks a few megabytes two or three times). So each report of
that stream starts cold, and so does the baseline's broadcast, which touches far less memory.

Here the server gets one report at a time on one kept-alive connection, in pairs: a pause of
one stream interval (``--rate``: 50 ms at 20/s), then a report (cold), then at once another
(warm). Taking turns, the two kinds see the box as it is at the same moments. Timed from the
request's write to its answer's last byte, by this process (which sleeps in the pause too).
The same is done against the intake benchmark's bare endpoint, inserting one row with
asyncpg, as the baseline (PostgreSQL only); and a probe of the box alone, in this process: the
same Python work (parse a JSON document, read some thousands of objects among 200k) after the
pause and right after itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.alert import OPERATORS, bench_town
from bench.common import (
    BoxCpu,
    BoxProbe,
    Figure,
    Report,
    Row,
    open_kept_alive,
    percentile,
    ratios,
    read_response,
    say,
    scratch_postgres,
    serve_bare,
    serve_dispatch,
    sqlalchemy_url,
    stolen_since,
    town_env,
    work_dir,
)
from bench.intake import requests_for
from dispatch.simulate.seed import seed_database

LEADERS = 1000
WARMUP = 30
KINDS = ("cold", "warm")


def run(report: Report, args: argparse.Namespace) -> None:
    asyncio.run(_run(report, args))


async def _run(report: Report, args: argparse.Namespace) -> None:
    pause = 1.0 / args.rate
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    town, points = bench_town(LEADERS)
    with work_dir(args.work, "cold") as work:
        for backend in backends:
            ours: list[dict[str, float]] = []
            bare: list[dict[str, float]] = []
            probe: list[dict[str, float]] = []
            async with _database(backend, work) as (url, dsn):
                secret = secrets.token_urlsafe(32)
                seeded = await seed_database(url, town, secret=secret, operators=OPERATORS)
                requests = requests_for(points, seeded.operator_token)
                anonymous = requests_for(points, None)
                for rep in range(args.reps):
                    ours.append(await _served_ours(url, secret, requests, pause, args, work))
                    if dsn is not None:
                        bare.append(await _served_bare(dsn, anonymous, pause, args, work))
                    probe.append(_probe(pause, args.reports))
                    say(f"    {backend}, run {rep + 1}: " + _said(ours[-1], bare, probe[-1]))
            report.raw[f"cold-{backend}"] = {"ours": ours, "bare": bare, "probe": probe}
            _rows(report, backend, ours, bare, probe, pause)


@contextlib.asynccontextmanager
async def _database(backend: str, work: Path) -> AsyncIterator[tuple[str, str | None]]:
    """The server's database URL and, on PostgreSQL, the baseline's asyncpg DSN."""
    if backend == "sqlite":
        path = work / "cold.db"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        yield f"sqlite+aiosqlite:///{path}", None
        return
    async with scratch_postgres("bench_cold") as dsn:
        yield sqlalchemy_url(dsn), dsn


async def _served_ours(
    url: str,
    secret: str,
    requests: list[bytes],
    pause: float,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, float]:
    env = town_env(url, secret, work)
    served = await asyncio.to_thread(serve_dispatch, env, work, "cold-ours")
    try:
        return await _pairs(served.port, requests, pause, args.reports)
    finally:
        served.stop()


async def _served_bare(
    dsn: str, requests: list[bytes], pause: float, args: argparse.Namespace, work: Path
) -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        served = await asyncio.to_thread(stack.enter_context, serve_bare(dsn, work))
        return await _pairs(served.port, requests, pause, args.reports)


async def _pairs(port: int, requests: list[bytes], pause: float, count: int) -> dict[str, float]:
    """``count`` pairs of a request after ``pause`` (cold) and one right after it (warm): the
    p50 and p90 of each kind, in milliseconds."""
    reader, writer = await open_kept_alive(port)
    taken: dict[str, list[float]] = {kind: [] for kind in KINDS}
    n = 0

    async def one() -> float:
        nonlocal n
        request = requests[n % len(requests)]
        n += 1
        began = time.perf_counter()
        writer.write(request)
        status, body = await read_response(reader)
        if status != 201:
            raise RuntimeError(f"report refused: {status} {body[:200]!r}")
        return (time.perf_counter() - began) * 1000

    try:
        for _ in range(WARMUP):
            await one()
        box_before = BoxCpu.read()
        for _ in range(count):
            # Nothing else is scheduled here: the whole process idles, as the stream's does.
            await asyncio.sleep(pause)
            taken["cold"].append(await one())
            taken["warm"].append(await one())
    finally:
        writer.close()
    return {**_summary(taken), "stolen_share": stolen_since(box_before)}


def _probe(pause: float, count: int) -> dict[str, float]:
    """The box's probe (``BoxProbe``) after ``pause`` and right after itself, in this process."""
    taken: dict[str, list[float]] = {kind: [] for kind in KINDS}
    probe = BoxProbe()
    for _ in range(WARMUP):
        probe.once_ms()
    box_before = BoxCpu.read()
    for _ in range(count):
        time.sleep(pause)
        taken["cold"].append(probe.once_ms())
        taken["warm"].append(probe.once_ms())
    return {**_summary(taken), "stolen_share": stolen_since(box_before)}


def _summary(taken: dict[str, list[float]]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for kind, values in taken.items():
        summary[f"{kind}_p50_ms"] = percentile(values, 50)
        summary[f"{kind}_p90_ms"] = percentile(values, 90)
    summary["slowdown"] = summary["cold_p50_ms"] / summary["warm_p50_ms"]
    return summary


def _said(ours: dict[str, float], bare: list[dict[str, float]], probe: dict[str, float]) -> str:
    def pair(s: dict[str, float]) -> str:
        return (
            f"cold {s['cold_p50_ms']:.2f} ms, warm {s['warm_p50_ms']:.2f} ms, "
            f"stolen by the host {s['stolen_share']:.1%}"
        )

    text = f"report {pair(ours)}"
    if bare:
        text += f"; bare {pair(bare[-1])}"
    return text + f"; probe {pair(probe)}"


def _rows(
    report: Report,
    backend: str,
    ours: list[dict[str, float]],
    bare: list[dict[str, float]],
    probe: list[dict[str, float]],
    pause: float,
) -> None:
    case = f"{LEADERS // 1000}k leaders, {backend}, served, one at a time"
    quiet = f"{pause * 1000:.0f} ms"
    metrics: list[tuple[str, str, str]] = [
        ("cold_p50_ms", f"report after {quiet} of quiet: p50", "ms"),
        ("cold_p90_ms", f"report after {quiet} of quiet: p90", "ms"),
        ("warm_p50_ms", "report right after another: p50", "ms"),
        ("warm_p90_ms", "report right after another: p90", "ms"),
        ("slowdown", "after quiet / right after, p50", "x"),
        ("stolen_share", "the box's CPU stolen by the host", ""),
    ]

    def of(runs: list[dict[str, float]], key: str) -> Figure:
        return Figure.of(r[key] for r in runs)

    for key, label, unit in metrics:
        compared = bool(bare) and key not in ("slowdown", "stolen_share")
        report.rows.append(
            Row(
                "cold",
                case,
                label,
                unit,
                of(ours, key),
                baseline=of(bare, key) if bare else None,
                ratio=ratios([r[key] for r in ours], [r[key] for r in bare]) if compared else None,
            )
        )
    case = f"the box alone, between the {backend} runs: Python work walking megabytes"
    report.rows += [
        Row("cold", case, f"after {quiet} of quiet: p50", "ms", of(probe, "cold_p50_ms")),
        Row("cold", case, "right after itself: p50", "ms", of(probe, "warm_p50_ms")),
        Row("cold", case, "after quiet / right after, p50", "x", of(probe, "slowdown")),
        Row("cold", case, "the box's CPU stolen by the host", "", of(probe, "stolen_share")),
    ]
