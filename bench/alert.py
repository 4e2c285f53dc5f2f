"""Report to alert, and memory per connected websocket.

A real server process (``dispatch serve``) on SQLite and on PostgreSQL; 1k and 10k leaders
connected from several client processes; incidents POSTed at a steady rate, each covered by the
zones of 5 to 20 leaders. Measured: from the moment the POST is written to its socket to each
matched leader's receipt of the alert (p50/p99/max), and the server's resident memory per
connected socket.

Baseline, same run, same machine: a minimal ``websockets`` server (bench/baseline_ws.py) that
``broadcast()``s the same payload to the same recipients, sent over a websocket from the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect

from bench.common import (
    HOST,
    BoxCpu,
    BoxProbe,
    Figure,
    KeptAlive,
    Report,
    Row,
    Served,
    cpu_seconds,
    database_cpu_s,
    free_port,
    percentile,
    post_request,
    profiled,
    ratios,
    rss_kib,
    say,
    scratch_postgres,
    serve_dispatch,
    sqlalchemy_url,
    start_process,
    stolen_since,
    town_env,
    work_dir,
)
from dispatch.config import Settings
from dispatch.simulate.leaders import Crowd, Leader, WorkerJob, split
from dispatch.simulate.seed import seed_database
from dispatch.simulate.town import QINGXI, TeamSpec, Town, offset
from dispatch.teams.models import DEFAULT_RADIUS_M, TeamKind
from geo import CircleZone, ZoneIndex

# Mean zone area with fixed posts (100 m) and mobile teams (500 m) half and half, in m².
MEAN_ZONE_AREA_M2 = 0.5 * math.pi * (100.0**2 + 500.0**2)
TARGET_MEAN_RECIPIENTS = 11.0
RECIPIENTS = (5, 20)
WARMUP_INCIDENTS = 20
# Idle sockets measured over this long: two heartbeats of the presence rows (every 10 s).
IDLE_S = 20.0
# Reports come from a control room of four operators in turn. Each report locks its reporter's
# rate-limit bucket until it commits, so one account's reports run one at a time.
OPERATORS = 4


def bench_town(leaders: int, seed: int = 7) -> tuple[Town, list[tuple[float, float, int]]]:
    """One leader per tier-1 team, dense enough that a point has ~11 covering zones; and
    incident points that 5-20 leaders cover (with their recipient count)."""
    rng = np.random.default_rng(seed)
    side_m = math.sqrt(leaders * MEAN_ZONE_AREA_M2 / TARGET_MEAN_RECIPIENTS)
    half = side_m / 2
    town = Town(f"bench town of {leaders} leaders", QINGXI, side_m)
    east = rng.uniform(-half, half, leaders)
    north = rng.uniform(-half, half, leaders)
    for i in range(leaders):
        kind = TeamKind.FIXED_POST if i % 2 == 0 else TeamKind.MOBILE
        lon, lat = offset(*QINGXI, float(east[i]), float(north[i]))
        town.teams.append(TeamSpec(f"T{i:05d}", kind, lon, lat, DEFAULT_RADIUS_M[kind]))
    index = ZoneIndex(
        CircleZone(t.name, t.lon, t.lat, DEFAULT_RADIUS_M[t.kind]) for t in town.teams
    )
    points: list[tuple[float, float, int]] = []
    while len(points) < 5000:
        lon, lat = offset(*QINGXI, float(rng.uniform(-half, half)), float(rng.uniform(-half, half)))
        count = len(index.covering(lon, lat))
        if RECIPIENTS[0] <= count <= RECIPIENTS[1]:
            points.append((lon, lat, count))
    return town, points


@dataclass
class Connections:
    """What the connected leaders cost our server before any incident: per socket, and while
    they sit idle (CPU as a share of one core; the database's on PostgreSQL, where it is a
    process of its own)."""

    per_socket_kib: float
    connect_s: float
    idle_server_share: float
    idle_database_share: float | None


@dataclass
class Stream:
    """What one incident stream produced."""

    latencies_ms: list[float] = field(default_factory=list)
    response_ms: list[float] = field(default_factory=list)
    # The (tag, user id) pairs the stream's alerts should reach, and how many of those did:
    # each pair counted once, however often its alert came.
    wanted: set[tuple[str, str]] = field(default_factory=set)
    expected: int = 0
    received: int = 0
    # Receipts of a pair already received, and of a pair not wanted: neither is a delivery.
    duplicates: int = 0
    unexpected: int = 0
    # Reports the server refused (anything but 201): their alerts are not expected.
    failed: int = 0
    # Reports sent again: their kept-alive connection was closed by the server as they went out.
    resent: int = 0
    server_cpu_share: float = 0.0
    # Of the box's CPU time during the stream, the share the host gave to its other guests.
    stolen_share: float = 0.0
    # The box's probe right before the stream, in milliseconds: its speed in that hour.
    box_work_ms: float = float("nan")
    # tag -> recipients and one payload, so the baseline can send the same.
    recipients: dict[str, list[str]] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "max_ms": max(self.latencies_ms, default=float("nan")),
            "response_p50_ms": percentile(self.response_ms, 50),
            "response_p99_ms": percentile(self.response_ms, 99),
            "deliveries": self.received,
            "expected": self.expected,
            "duplicate_receipts": self.duplicates,
            "unexpected_receipts": self.unexpected,
            "failed_posts": self.failed,
            "resent_posts": self.resent,
            "server_cpu_share": self.server_cpu_share,
            "stolen_share": self.stolen_share,
            "box_work_ms": self.box_work_ms,
        }


@functools.cache
def box_probe() -> BoxProbe:
    """One probe for the run, made on first use (its objects are some megabytes)."""
    return BoxProbe()


def run(report: Report, args: argparse.Namespace) -> None:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for count in args.leaders:
        say(f"  {count} leaders")
        town, points = bench_town(count)
        with work_dir(args.work, f"alert-{count}") as work:
            ours: dict[str, list[Stream]] = {}
            connections: dict[str, Connections] = {}
            for backend in backends:
                streams, connected = asyncio.run(_ours(backend, town, points, args, work))
                ours[backend], connections[backend] = streams, connected
            reference = next(iter(ours.values()))[-1]
            baseline, baseline_memory = _baseline(town, reference, args, work)
            floor = _bare_uvicorn_memory(count, args, work)
        _rows(report, count, ours, connections, baseline, baseline_memory)
        report.rows.append(
            Row(
                "connections",
                f"{count // 1000}k leaders",
                "RSS per idle websocket, bare uvicorn endpoint",
                "KiB",
                Figure.of([floor]),
                Figure.of([baseline_memory]),
                Figure.of([floor / baseline_memory]) if baseline_memory else None,
                note="FastAPI/Starlette under uvicorn, same websocket settings, no state of ours",
            )
        )


# ---------------------------------------------------------------- our server


async def _ours(
    backend: str,
    town: Town,
    points: list[tuple[float, float, int]],
    args: argparse.Namespace,
    work: Path,
) -> tuple[list[Stream], Connections]:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{work / 'alert.db'}"
        with contextlib.suppress(FileNotFoundError):
            (work / "alert.db").unlink()
        return await _ours_on(url, backend, town, points, args, work)
    async with scratch_postgres("bench_alert") as dsn:
        return await _ours_on(sqlalchemy_url(dsn), backend, town, points, args, work)


async def _ours_on(
    url: str,
    backend: str,
    town: Town,
    points: list[tuple[float, float, int]],
    args: argparse.Namespace,
    work: Path,
) -> tuple[list[Stream], Connections]:
    secret = secrets.token_urlsafe(32)
    started = time.monotonic()
    seeded = await seed_database(url, town, secret=secret, operators=OPERATORS)
    say(
        f"    {backend}: seeded {len(seeded.leaders)} leaders in {time.monotonic() - started:.1f} s"
    )
    env = town_env(url, secret, work)
    recipients = covering_leaders(town, seeded.leaders)
    served = await asyncio.to_thread(serve_dispatch, env, work, f"server-{backend}")
    try:
        # Warm up code paths and allocator before the memory baseline.
        await _warm_up(served, seeded.operator_token, points)
        before = rss_kib(served.process.pid)
        crowd = Crowd(_jobs(served.ws_url, served.base_url, seeded.leaders, args))
        started = time.monotonic()
        totals = await asyncio.to_thread(crowd.start)
        connect_s = time.monotonic() - started
        await asyncio.sleep(2.0)
        after = rss_kib(served.process.pid)
        per_socket = (after - before) / max(1, totals["connected"])
        say(
            f"    {backend}: {totals['connected']} connected in {connect_s:.1f} s "
            f"({totals['failed']} failed); {per_socket:.1f} KiB per socket"
        )
        connections = await _idle(served, backend, per_socket, connect_s)
        streams = []
        try:
            for rep in range(args.reps):
                name = f"{backend}-{len(seeded.leaders)}-{rep}"
                with profiled(args.profile, served.process.pid, name, args.seconds):
                    stream = await _stream_ours(
                        served, seeded.operator_tokens, points, recipients, args, rep
                    )
                streams.append(stream)
        finally:
            results = await asyncio.to_thread(crowd.stop)
        _collect(streams, results)
        if not args.no_page_pings:
            pings = sum(int(r["pings"]) for r in results)
            say(f"    {backend}: page pings {pings}, pongs {sum(int(r['pongs']) for r in results)}")
        for stream in streams:
            summary = stream.summary()
            say(
                f"    {backend}: p50 {summary['p50_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms, "
                f"max {summary['max_ms']:.1f} ms; {summary['deliveries']}/{summary['expected']} "
                f"delivered; server CPU {summary['server_cpu_share']:.0%}; "
                f"stolen by the host {summary['stolen_share']:.1%}; "
                f"box probe {summary['box_work_ms']:.2f} ms"
                + (f"; {stream.resent} sent again" if stream.resent else "")
            )
        return streams, connections
    finally:
        served.stop()


async def _idle(served: Served, backend: str, per_socket: float, connect_s: float) -> Connections:
    server, database, began = cpu_seconds(served.process.pid), database_cpu_s(), time.monotonic()
    await asyncio.sleep(IDLE_S)
    elapsed = time.monotonic() - began
    server_share = (cpu_seconds(served.process.pid) - server) / elapsed
    database_share = (database_cpu_s() - database) / elapsed if backend == "postgresql" else None
    say(
        f"    {backend}: idle for {elapsed:.0f} s, server CPU {server_share:.1%}"
        + ("" if database_share is None else f", PostgreSQL CPU {database_share:.1%}")
    )
    return Connections(per_socket, connect_s, server_share, database_share)


def _jobs(
    ws_url: str, base_url: str, leaders: list[Leader], args: argparse.Namespace
) -> list[WorkerJob]:
    # The pages' default: the server the benchmark starts keeps it.
    page_ping_s = float(Settings.model_fields["ws_client_ping_s"].default)
    ping_after_s = None if args.no_page_pings else page_ping_s
    return [
        WorkerJob(
            ws_url,
            base_url,
            part,
            "measure",
            seed=i,
            ack=not args.no_ack,
            ping_after_s=ping_after_s,
        )
        for i, part in enumerate(split(leaders, args.clients))
    ]


async def _warm_up(served: Served, token: str, points: list[tuple[float, float, int]]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        for lon, lat, _ in points[-WARMUP_INCIDENTS:]:
            body = {
                "location": {"lon": lon, "lat": lat},
                "category": "other",
                "description": "warm",
            }
            (await http.post("/api/v1/incidents", json=body, headers=headers)).raise_for_status()
    for _ in range(3):
        async with connect(served.ws_url, compression=None) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
            await ws.recv()


def covering_leaders(town: Town, leaders: list[Leader]) -> Callable[[float, float], list[str]]:
    """The leaders a report at a place should alert: those of the teams whose zones cover it
    (the benchmark's server escalates an hour on, so no wider ring)."""
    index = ZoneIndex(CircleZone(t.name, t.lon, t.lat, t.radius_m or 0.0) for t in town.teams)
    of_team: dict[str, list[str]] = {}
    for leader in leaders:
        of_team.setdefault(leader.team_key, []).append(leader.user_id)

    def recipients(lon: float, lat: float) -> list[str]:
        return [u for hit in index.covering(lon, lat) for u in of_team.get(hit.key, [])]

    return recipients


async def _stream_ours(
    served: Served,
    tokens: list[str],
    points: list[tuple[float, float, int]],
    recipients: Callable[[float, float], list[str]],
    args: argparse.Namespace,
    rep: int,
) -> Stream:
    stream = Stream(box_work_ms=box_probe().back_to_back_ms())
    count = int(args.rate * args.seconds)
    interval = 1.0 / args.rate
    sent: dict[str, float] = {}
    cpu_before, box_before = cpu_seconds(served.process.pid), BoxCpu.read()
    http = KeptAlive(served.port)
    try:

        async def post(n: int, lon: float, lat: float, wanted: list[str]) -> None:
            tag = f"r{rep}-{n}"
            body = {"location": {"lon": lon, "lat": lat}, "category": "fight", "description": tag}
            request = post_request("/api/v1/incidents", body, tokens[n % len(tokens)])
            # Should the request fail, its alerts are still timed from about when it went out.
            sent[tag] = time.monotonic()
            try:
                status, _, began, elapsed = await asyncio.wait_for(http.send(request), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                # Given up waiting; the server may still complete it, so its alerts still count.
                stream.failed += 1
                return
            # The clock starts as the request is written, as the baseline's at its send.
            sent[tag] = began
            stream.response_ms.append(elapsed * 1000)
            if status != 201:
                stream.failed += 1
                stream.wanted.difference_update((tag, user) for user in wanted)

        tasks = []
        began = time.monotonic()
        offset_n = rep * count
        for n in range(count):
            await _sleep_until(began + n * interval)
            lon, lat, _ = points[(offset_n + n) % (len(points) - WARMUP_INCIDENTS)]
            wanted = recipients(lon, lat)
            stream.wanted.update((f"r{rep}-{n}", user) for user in wanted)
            tasks.append(asyncio.create_task(post(n, lon, lat, wanted)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - began
        stream.resent = http.resent
    finally:
        await http.close()
    stream.server_cpu_share = (cpu_seconds(served.process.pid) - cpu_before) / elapsed
    stream.stolen_share = stolen_since(box_before)
    await asyncio.sleep(2.0)
    stream_sent = sent
    stream.samples = {"__sent__": json.dumps(stream_sent)}
    return stream


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _collect(streams: list[Stream], results: list[dict[str, Any]]) -> None:
    """Match receipts from every client process with the send time of their incident, and
    with the (incident, recipient) pairs the stream wanted: a pair's first receipt is its
    delivery and its latency; another of the same pair (an alert sent again) is a duplicate,
    one of a pair not wanted is unexpected, and neither stands in for a lost one."""
    sent: dict[str, float] = {}
    by_rep: dict[str, Stream] = {}
    for stream in streams:
        stamps = json.loads(stream.samples.pop("__sent__"))
        sent.update(stamps)
        for tag in stamps:
            by_rep[tag] = stream
    heard: set[tuple[str, str]] = set()
    receipts = sorted(
        (at, tag, user_id) for result in results for tag, user_id, at, _size in result["receipts"]
    )
    for at, tag, user_id in receipts:
        owner = by_rep.get(tag)
        if owner is None:
            continue
        if (tag, user_id) in heard:
            owner.duplicates += 1
            continue
        heard.add((tag, user_id))
        if (tag, user_id) not in owner.wanted:
            owner.unexpected += 1
            continue
        owner.received += 1
        owner.latencies_ms.append((at - sent[tag]) * 1000)
        owner.recipients.setdefault(tag, []).append(user_id)
    for result in results:
        for tag, text in result["samples"].items():
            if tag in by_rep:
                by_rep[tag].samples.setdefault(tag, text)
    for stream in streams:
        stream.expected = len(stream.wanted)


# ---------------------------------------------------------------- the baseline


def _baseline(
    town: Town, reference: Stream, args: argparse.Namespace, work: Path
) -> tuple[list[Stream], float]:
    port = free_port()
    log = work / "baseline.log"
    process = start_process(
        [sys.executable, "-m", "bench.baseline_ws", "--port", str(port)], os.environ, log, port
    )
    try:
        _wait_port(port, process, log)
        served = Served(process, f"http://{HOST}:{port}", port, log)
        ws_url = f"ws://{HOST}:{port}/"
        # The baseline takes the user id itself as the token.
        leaders = [Leader(u, u, "", "") for u in _all_user_ids(reference, town)]
        before = rss_kib(process.pid)
        crowd = Crowd(
            [
                WorkerJob(ws_url, served.base_url, part, "measure", seed=i, ack=not args.no_ack)
                for i, part in enumerate(split(leaders, args.clients))
            ]
        )
        totals = crowd.start()
        time.sleep(2.0)
        per_socket = (rss_kib(process.pid) - before) / max(1, totals["connected"])
        say(f"    baseline: {totals['connected']} connected; {per_socket:.1f} KiB per socket")
        streams = []
        try:
            for rep in range(args.reps):
                streams.append(asyncio.run(_stream_baseline(served, ws_url, reference, args, rep)))
        finally:
            results = crowd.stop()
        _collect(streams, results)
        for stream in streams:
            summary = stream.summary()
            say(
                f"    baseline: p50 {summary['p50_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms, "
                f"max {summary['max_ms']:.1f} ms; {summary['deliveries']}/{summary['expected']} "
                f"delivered; server CPU {summary['server_cpu_share']:.0%}; "
                f"stolen by the host {summary['stolen_share']:.1%}; "
                f"box probe {summary['box_work_ms']:.2f} ms"
            )
        return streams, per_socket
    finally:
        served.stop()


def _bare_uvicorn_memory(count: int, args: argparse.Namespace, work: Path) -> float:
    """Memory per connection of a bare FastAPI websocket endpoint: the floor under ours."""
    port = free_port()
    log = work / "bare-ws.log"
    process = start_process(
        [sys.executable, "-m", "bench.bare_ws", "--port", str(port)], os.environ, log, port
    )
    try:
        _wait_port(port, process, log)
        ws_url = f"ws://{HOST}:{port}/ws"
        leaders = [Leader(f"idle-{i}", f"idle-{i}", "", "") for i in range(count)]
        before = rss_kib(process.pid)
        crowd = Crowd(
            [
                WorkerJob(ws_url, "", part, "measure", seed=i, ack=False)
                for i, part in enumerate(split(leaders, args.clients))
            ]
        )
        totals = crowd.start()
        time.sleep(2.0)
        per_socket = (rss_kib(process.pid) - before) / max(1, totals["connected"])
        crowd.stop()
        say(f"    bare uvicorn: {totals['connected']} connected; {per_socket:.1f} KiB per socket")
        return per_socket
    finally:
        process.terminate()
        process.wait(15)


def _all_user_ids(reference: Stream, town: Town) -> list[str]:
    """As many leaders as our server had connected: the recipients seen, padded with others."""
    seen = sorted({u for users in reference.recipients.values() for u in users})
    padding = [f"idle-{i}" for i in range(max(0, len(town.teams) - len(seen)))]
    return seen + padding


def _wait_port(port: int, process: Any, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"baseline exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError("baseline server did not start")


async def _stream_baseline(
    served: Served, ws_url: str, reference: Stream, args: argparse.Namespace, rep: int
) -> Stream:
    stream = Stream(box_work_ms=box_probe().back_to_back_ms())
    tags = [t for t in reference.recipients if t in reference.samples]
    count = int(args.rate * args.seconds)
    interval = 1.0 / args.rate
    sent: dict[str, float] = {}
    cpu_before, box_before = cpu_seconds(served.process.pid), BoxCpu.read()
    async with connect(ws_url, compression=None, max_size=None) as control:
        await control.send(json.dumps({"type": "control"}))
        began = time.monotonic()
        for n in range(count):
            await _sleep_until(began + n * interval)
            source = tags[n % len(tags)]
            tag = f"b{rep}-{n}"
            payload = reference.samples[source].replace(
                f'"description":"{source}"', f'"description":"{tag}"'
            )
            recipients = reference.recipients[source]
            stream.wanted.update((tag, user) for user in recipients)
            message = json.dumps({"recipients": recipients, "payload": payload})
            sent[tag] = time.monotonic()
            await control.send(message)
        elapsed = time.monotonic() - began
    stream.server_cpu_share = (cpu_seconds(served.process.pid) - cpu_before) / elapsed
    stream.stolen_share = stolen_since(box_before)
    await asyncio.sleep(2.0)
    stream.samples = {"__sent__": json.dumps(sent)}
    return stream


# ---------------------------------------------------------------- the table


def _rows(
    report: Report,
    count: int,
    ours: dict[str, list[Stream]],
    connections: dict[str, Connections],
    baseline: list[Stream],
    baseline_memory: float,
) -> None:
    base_p50 = [s.summary()["p50_ms"] for s in baseline]
    base_p99 = [s.summary()["p99_ms"] for s in baseline]
    base_max = [s.summary()["max_ms"] for s in baseline]
    big = count >= 10_000
    for backend, streams in ours.items():
        summaries = [s.summary() for s in streams]
        p50 = [s["p50_ms"] for s in summaries]
        p99 = [s["p99_ms"] for s in summaries]
        worst = [s["max_ms"] for s in summaries]
        case = f"{count // 1000}k leaders, {backend}"
        pg_big = big and backend == "postgresql"
        p50_fig, p99_fig = Figure.of(p50), Figure.of(p99)
        p50_ratio = ratios(p50, base_p50)
        report.rows.append(
            Row(
                "report→alert",
                case,
                "p50",
                "ms",
                p50_fig,
                Figure.of(base_p50),
                p50_ratio,
                "≤ 5 ms, ≤ 2x" if pg_big else "",
                (p50_fig.median <= 5 and p50_ratio.median <= 2) if pg_big else None,
            )
        )
        report.rows.append(
            Row(
                "report→alert",
                case,
                "p99",
                "ms",
                p99_fig,
                Figure.of(base_p99),
                ratios(p99, base_p99),
                "≤ 25 ms" if pg_big else "",
                (p99_fig.median <= 25) if pg_big else None,
            )
        )
        report.rows.append(
            Row("report→alert", case, "max", "ms", Figure.of(worst), Figure.of(base_max))
        )
        report.rows.append(
            Row(
                "report→alert",
                case,
                "POST response p50",
                "ms",
                Figure.of(s["response_p50_ms"] for s in summaries),
                note="HTTP + database; the baseline has neither",
            )
        )
        delivered = sum(s["deliveries"] for s in summaries)
        expected = sum(s["expected"] for s in summaries)
        report.rows.append(
            Row(
                "report→alert",
                case,
                "delivered / expected",
                "",
                Figure.of([delivered / expected if expected else float("nan")]),
                Figure.of(
                    [sum(s.received for s in baseline) / max(1, sum(s.expected for s in baseline))]
                ),
                target="1.00",
                met=delivered >= expected,
                note="each (incident, leader) pair counted once; "
                f"{sum(s['duplicate_receipts'] for s in summaries)} duplicate and "
                f"{sum(s['unexpected_receipts'] for s in summaries)} unexpected receipts not "
                "counted",
            )
        )
        for metric, unit, key, note in STREAM_FIGURES:
            report.rows.append(
                Row(
                    "report→alert",
                    case,
                    metric,
                    unit,
                    Figure.of(s[key] for s in summaries),
                    Figure.of(getattr(s, key) for s in baseline),
                    note=note,
                )
            )
        _connection_rows(report, case, connections[backend], baseline_memory, big)
    report.raw.setdefault("alert", []).append(
        {
            "leaders": count,
            "ours": {b: [s.summary() for s in streams] for b, streams in ours.items()},
            "baseline": [s.summary() for s in baseline],
            "connections": {b: asdict(c) for b, c in connections.items()},
            "baseline_rss_per_socket_kib": baseline_memory,
        }
    )


# Figures of each stream beside the baseline's: (metric, unit, the summary's field, note).
STREAM_FIGURES = (
    ("server CPU share", "", "server_cpu_share", "of one core, during the stream"),
    (
        "the box's CPU stolen by the host",
        "",
        "stolen_share",
        "share of both cores' time during the stream (steal in /proc/stat)",
    ),
    (
        "the box: a fixed piece of Python work, before the stream",
        "ms",
        "box_work_ms",
        "BoxProbe: the box's speed in that hour",
    ),
)


def _connection_rows(
    report: Report, case: str, connected: Connections, baseline_memory: float, big: bool
) -> None:
    per_socket = connected.per_socket_kib
    report.rows.append(
        Row(
            "connections",
            case,
            "RSS per idle websocket",
            "KiB",
            Figure.of([per_socket]),
            Figure.of([baseline_memory]),
            Figure.of([per_socket / baseline_memory]) if baseline_memory else None,
            "≤ 40 KiB" if big else "",
            (per_socket <= 40) if big else None,
        )
    )
    report.rows.append(
        Row(
            "connections",
            case,
            "time to connect them all",
            "s",
            Figure.of([connected.connect_s]),
            note="hello and replay for each, from 4 client processes",
        )
    )
    report.rows.append(
        Row(
            "connections",
            case,
            "idle: server CPU",
            "% of a core",
            Figure.of([100 * connected.idle_server_share]),
            note=f"over {IDLE_S:.0f} s with every socket open and quiet",
        )
    )
    if connected.idle_database_share is not None:
        report.rows.append(
            Row(
                "connections",
                case,
                "idle: PostgreSQL CPU",
                "% of a core",
                Figure.of([100 * connected.idle_database_share]),
                note="the same seconds",
            )
        )
