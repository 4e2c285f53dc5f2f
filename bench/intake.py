"""Intake throughput: POST /api/v1/incidents at 32 concurrent connections for a fixed time on
PostgreSQL; requests/s and p99. Baseline: a bare FastAPI endpoint inserting one row with asyncpg
(bench/bare_intake.py), same uvicorn settings, same run.

The load comes from two processes speaking plain HTTP/1.1 keep-alive over asyncio streams: a
full HTTP client library costs more CPU per request than the server under test, and on two cores
that would measure the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from bench.alert import OPERATORS, bench_town
from bench.common import (
    BoxCpu,
    BoxProbe,
    Figure,
    Report,
    Row,
    Served,
    database_cpu_s,
    open_kept_alive,
    percentile,
    post_request,
    profiled,
    ratios,
    read_response,
    say,
    scratch_postgres,
    serve_bare,
    serve_dispatch,
    sqlalchemy_url,
    town_env,
    tree_cpu_seconds,
    work_dir,
)
from dispatch.simulate.seed import seed_database

LOAD_PROCESSES = 2
INTAKE_LEADERS = 1000
# A report stored: the only answer that counts as one served.
CREATED = 201


def requests_for(points: list[tuple[float, float, int]], token: str | None) -> list[bytes]:
    """Prebuilt POSTs over the town's incident points, ready to write to a socket."""
    return [
        post_request(
            "/api/v1/incidents",
            {"location": {"lon": lon, "lat": lat}, "category": "theft", "description": f"i{n}"},
            token,
        )
        for n, (lon, lat, _) in enumerate(points[:500])
    ]


async def _connection(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    requests: list[bytes],
    start: int,
    deadline: float,
    out: dict[str, Any],
) -> None:
    reader, writer = connection
    # The reports stored (201) apart from the other answers: a server refusing fast (503)
    # would otherwise count as one serving fast.
    latencies: list[float] = out["latencies"]
    refused: list[float] = out["refused"]
    statuses: Counter[int] = out["statuses"]
    n = start
    try:
        while time.monotonic() < deadline:
            request = requests[n % len(requests)]
            n += 1
            began = time.monotonic()
            writer.write(request)
            status, _ = await read_response(reader)
            (latencies if status == CREATED else refused).append(time.monotonic() - began)
            statuses[status] += 1
    finally:
        writer.close()


def _load_process(
    port: int, requests: list[bytes], connections: int, seconds: float, pipe: Any
) -> None:
    """One load process: its connections opened, it says it is ready and waits for the word
    to go, so that the load's CPU is counted from when every process sends, not while they
    start."""

    async def main() -> dict[str, Any]:
        opened = await asyncio.gather(*(open_kept_alive(port) for _ in range(connections)))
        pipe.send("ready")
        pipe.recv()
        cpu_before = time.process_time()
        out: dict[str, Any] = {"latencies": [], "refused": [], "statuses": Counter()}
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(
                _connection(connection, requests, i * 37, deadline, out)
                for i, connection in enumerate(opened)
            )
        )
        return {**out, "cpu_s": time.process_time() - cpu_before}

    try:
        import uvloop

        result = uvloop.run(main())
    except ImportError:
        result = asyncio.run(main())
    pipe.send(result)


# The database's other client connections: how many wait for a lock another transaction holds,
# and how many are at work (not idle in the pool).
ACTIVITY = """
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*) FILTER (WHERE state <> 'idle')
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


@contextlib.asynccontextmanager
async def lock_waits(dsn: str) -> AsyncIterator[list[int]]:
    """While the block runs, every 100 ms: how many connections wait for a lock, counted when
    any is at work. Transactions queueing on a row they all write (a convoy) show here."""
    samples: list[int] = []
    connection = await asyncpg.connect(dsn)

    async def sample() -> None:
        while True:
            waiting, busy = await connection.fetchrow(ACTIVITY)
            if busy:
                samples.append(int(waiting))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await connection.close()


def _mean(samples: list[int]) -> float:
    return sum(samples) / len(samples) if samples else 0.0


def load(served: Served, requests: list[bytes], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` connections posting ``requests`` to ``served`` for ``seconds``, from
    two processes; the figures, and the CPU each part of the box spent a request meanwhile."""
    context = multiprocessing.get_context("spawn")
    per = concurrency // LOAD_PROCESSES
    workers = []
    for i in range(LOAD_PROCESSES):
        parent, child = context.Pipe()
        share = per + (1 if i < concurrency % LOAD_PROCESSES else 0)
        process = context.Process(
            target=_load_process, args=(served.port, requests, share, seconds, child), daemon=True
        )
        process.start()
        workers.append((process, parent))
    for _, pipe in workers:
        pipe.recv()
    box_before, server_before = BoxCpu.read(), tree_cpu_seconds(served.process.pid)
    database_before = database_cpu_s()
    for _, pipe in workers:
        pipe.send("go")
    latencies: list[float] = []
    refused: list[float] = []
    statuses: Counter[int] = Counter()
    load_cpu_s = 0.0
    for process, pipe in workers:
        result = pipe.recv()
        latencies += result["latencies"]
        refused += result["refused"]
        statuses.update(result["statuses"])
        load_cpu_s += result["cpu_s"]
        process.join(10)
    box = BoxCpu.read()
    server_cpu_s = tree_cpu_seconds(served.process.pid) - server_before
    database_cpu = database_cpu_s() - database_before
    done = max(len(latencies) + len(refused), 1)
    return {
        "stolen_share": box.stolen_share_since(box_before),
        "busy_cores": box.busy_cores_since(box_before),
        "server_ms": server_cpu_s / done * 1000,
        "database_ms": database_cpu / done * 1000,
        "load_ms": load_cpu_s / done * 1000,
        **served_figures(latencies, refused, seconds),
        "statuses": dict(statuses),
    }


def served_figures(
    latencies: list[float], refused: list[float], seconds: float
) -> dict[str, float]:
    """Requests/s and the latencies of the reports stored (``latencies``, the 201s) alone; the
    other answers (``refused``) counted beside them, as requests that served nothing."""
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "failed": len(refused),
        "failed_rps": len(refused) / seconds,
    }


def run(report: Report, args: argparse.Namespace) -> None:
    asyncio.run(_run(report, args))


async def _run(report: Report, args: argparse.Namespace) -> None:
    town, points = bench_town(INTAKE_LEADERS)
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    with work_dir(args.work, "intake") as work:
        async with scratch_postgres("bench_intake") as dsn:
            secret = secrets.token_urlsafe(32)
            url = sqlalchemy_url(dsn)
            seeded = await seed_database(url, town, secret=secret, operators=args.operators)
            env = town_env(url, secret, work)
            # Interleaved, so that consecutive requests on a connection come from each operator.
            per_operator = [requests_for(points, t) for t in seeded.operator_tokens]
            ours_requests = [r for group in zip(*per_operator, strict=True) for r in group]
            bare_requests = requests_for(points, None)
            probe = BoxProbe()
            for rep in range(args.reps):
                box_ms = probe.back_to_back_ms()
                served = await asyncio.to_thread(
                    serve_dispatch, env, work, "intake-ours", args.workers
                )
                try:
                    with profiled(args.profile, served.process.pid, f"intake-{rep}", args.seconds):
                        async with lock_waits(dsn) as waits:
                            result = await asyncio.to_thread(
                                load, served, ours_requests, args.concurrency, args.seconds
                            )
                finally:
                    served.stop()
                ours.append({**result, "lock_waits": _mean(waits), "box_work_ms": box_ms})
                _say("ours", ours[-1])
                box_ms = probe.back_to_back_ms()
                async with lock_waits(dsn) as waits:
                    result = await asyncio.to_thread(_bare_once, dsn, bare_requests, args, work)
                bare.append({**result, "lock_waits": _mean(waits), "box_work_ms": box_ms})
                _say("bare", bare[-1])
    _rows(report, ours, bare, args)


def _bare_once(
    dsn: str, requests: list[bytes], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with serve_bare(dsn, work, args.workers) as served:
        return load(served, requests, args.concurrency, args.seconds)


def _say(label: str, result: dict[str, Any]) -> None:
    say(
        f"    {label}: {result['rps']:.0f} req/s stored (201), {result['failed']} not, "
        f"p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, waiting for a lock {result['lock_waits']:.1f}, "
        f"statuses {result['statuses']}, stolen by the host {result['stolen_share']:.1%}, "
        f"box probe {result['box_work_ms']:.2f} ms, CPU a request: server "
        f"{result['server_ms']:.2f} ms, PostgreSQL {result['database_ms']:.2f} ms, load "
        f"{result['load_ms']:.2f} ms, cores busy {result['busy_cores']:.2f}"
    )


def _rows(
    report: Report,
    ours: list[dict[str, Any]],
    bare: list[dict[str, Any]],
    args: argparse.Namespace,
) -> None:
    processes = "" if args.workers == 1 else f", {args.workers} server processes"
    accounts = "" if args.operators == OPERATORS else f", {args.operators} operators"
    case = f"{args.concurrency} connections, postgresql{processes}{accounts}"

    def side_by_side(key: str) -> tuple[Figure, Figure]:
        return Figure.of(r[key] for r in ours), Figure.of(r[key] for r in bare)

    def ratio_of(key: str) -> Figure:
        return ratios([r[key] for r in ours], [r[key] for r in bare])

    rps_ratio = ratio_of("rps")
    p99, bare_p99 = side_by_side("p99_ms")
    report.rows += [
        Row(
            "intake",
            case,
            "requests/s",
            "/s",
            *side_by_side("rps"),
            rps_ratio,
            "≥ 0.5x",
            rps_ratio.median >= 0.5,
            note="reports stored (201) a second; ours writes the incident, chain, dispatches, "
            "events and alerts",
        ),
        Row(
            "intake",
            case,
            "p99",
            "ms",
            p99,
            bare_p99,
            ratio_of("p99_ms"),
            "≤ 50 ms",
            p99.median <= 50,
        ),
        Row("intake", case, "p50", "ms", *side_by_side("p50_ms"), ratio_of("p50_ms")),
        Row(
            "intake",
            case,
            "requests not answered 201",
            "",
            *side_by_side("failed"),
            note="left out of requests/s, p50 and p99: they stored nothing",
        ),
        Row(
            "intake",
            case,
            "connections waiting for a lock",
            "",
            *side_by_side("lock_waits"),
            note="mean of pg_stat_activity every 100 ms while any connection is at work",
        ),
        Row(
            "intake",
            case,
            "CPU a request: the server's",
            "ms",
            *side_by_side("server_ms"),
            ratio_of("server_ms"),
            note="the server's processes' CPU time during the load over the requests answered",
        ),
        Row(
            "intake",
            case,
            "CPU a request: PostgreSQL's",
            "ms",
            *side_by_side("database_ms"),
            ratio_of("database_ms"),
            note="every postgres process's CPU time during the load over the requests answered",
        ),
        Row(
            "intake",
            case,
            "CPU a request: the load processes'",
            "ms",
            *side_by_side("load_ms"),
            note="the two load processes' own CPU time over the requests they sent",
        ),
        Row(
            "intake",
            case,
            f"cores kept busy, of the box's {os.cpu_count()}",
            "",
            *side_by_side("busy_cores"),
            note="neither idle nor taken by the host, /proc/stat, during the load",
        ),
        Row(
            "intake",
            case,
            "the box's CPU stolen by the host",
            "",
            *side_by_side("stolen_share"),
            note="share of both cores' time during the load (steal in /proc/stat)",
        ),
        Row(
            "intake",
            case,
            "the box: a fixed piece of Python work, before the load",
            "ms",
            *side_by_side("box_work_ms"),
            note="BoxProbe: the box's speed in that hour",
        ),
    ]
    failed = sum(n for r in ours for s, n in r["statuses"].items() if int(s) != CREATED)
    if failed:
        report.note(f"intake: {failed} requests did not answer 201 (not counted as served)")
    report.raw["intake"] = {"ours": ours, "bare": bare}
