"""Work per report and per flush of acknowledgements, in-process: CPU and wall time.

The served benchmarks time a report across three processes on two cores, where the box's swing
from one run to the next is larger than most single changes. Here the application runs in this
process (``httpx`` over ASGI, no sockets to clients, the timer and the other background tasks as
served): the reports of the alert benchmark's town are posted one at a time, and after each the
acknowledgements of its alerts are recorded in one flush of the recorder, as the phones' would
be. Counted for each: this process's CPU (``time.process_time``, the in-process client's small
part included), the wall time, and on PostgreSQL the CPU its processes spent meanwhile (from
``/proc``: the database must run on this machine). Each repetition is a fresh database.

On PostgreSQL the intake benchmark's bare endpoint is posted the same way right after, on the
same database, as the report's baseline: the box's speed at that moment, for the figures to be
read as ratios across runs that the box's swing would otherwise make incomparable.

A report's wall time is also split along its path (``Timeline``): from the request reaching the
application to its first statement, the statements' round trips, the work between them, to the
COMMIT, the COMMIT's round trip, and from there to the response. The round trips are the
database's part of the wait (with the driver's and the socket's); the rest is ours, the
application's CPU on a path nothing else runs beside.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.acks import AckRecorder
from alerts.store import MESSAGES
from bench.alert import bench_town
from bench.bare_intake import create_app as create_bare_app
from bench.common import (
    Figure,
    Report,
    Row,
    database_cpu_s,
    ratios,
    say,
    scratch_postgres,
    sqlalchemy_url,
)
from dispatch.app import create_app
from dispatch.config import Settings
from dispatch.runtime import Runtime
from dispatch.simulate.seed import Seeded, seed_database
from dispatch.simulate.town import Town

WARMUP = 30
BARE_MEASURES = ("cpu", "wall", "database")
METRICS = (
    ("report", "cpu", "report: our CPU"),
    ("report", "wall", "report: wall"),
    ("report", "database", "report: PostgreSQL's CPU"),
    ("keyed", "cpu", "report with an Idempotency-Key (the console's): our CPU"),
    ("keyed", "wall", "report with an Idempotency-Key (the console's): wall"),
    ("keyed", "database", "report with an Idempotency-Key (the console's): PostgreSQL's CPU"),
    ("flush", "cpu", "flush of its acks: our CPU"),
    ("flush", "wall", "flush of its acks: wall"),
    ("flush", "database", "flush of its acks: PostgreSQL's CPU"),
    ("position", "cpu", "position fix on the way: our CPU"),
    ("position", "wall", "position fix on the way: wall"),
    ("position", "database", "position fix on the way: PostgreSQL's CPU"),
    ("view", "cpu", "an incident's view (GET): our CPU"),
    ("view", "wall", "an incident's view (GET): wall"),
    ("view", "database", "an incident's view (GET): PostgreSQL's CPU"),
)
# Position fixes, and reads of an incident's view, measured per run after as many again to warm
# up: one accepted team's leader, still far from the scene, sends fixes as a phone does every
# few seconds while its team is on the way; then reads the incident, as every hop's answer, a
# reload and the console build its view.
FIXES = 300


@dataclass
class Costs:
    """Milliseconds per report and per flush, summed over the measured ones; and along the
    report's path, summed over the reports whose path was recorded alone."""

    count: int = 0
    # Items counted apart from the reports (the position fixes), by what.
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[tuple[str, str], float] = field(default_factory=dict)
    paths: int = 0
    along: dict[str, float] = field(default_factory=dict)

    def add_path(self, phases: dict[str, float] | None) -> None:
        if phases is None:
            return
        self.paths += 1
        for name, ms in phases.items():
            self.along[name] = self.along.get(name, 0.0) + ms

    def add(self, what: str, cpu: float, wall: float, database: float) -> None:
        for name, seconds in (("cpu", cpu), ("wall", wall), ("database", database)):
            key = (what, name)
            self.totals[key] = self.totals.get(key, 0.0) + seconds * 1000

    def add_apart(self, what: str, cpu: float, wall: float, database: float) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        self.add(what, cpu, wall, database)

    def per_item(self) -> dict[tuple[str, str], float]:
        costs = {
            (what, name): total / self.counts.get(what, self.count)
            for (what, name), total in self.totals.items()
        }
        costs.update({("path", name): total / self.paths for name, total in self.along.items()})
        return costs


# A report's path in order, the label of each phase (wall time, ms).
PHASES = (
    ("to_first_statement", "report path: ours, to its first statement"),
    ("statements", "report path: statements' round trips"),
    ("between_statements", "report path: ours, between statements"),
    ("to_commit", "report path: ours, last statement to COMMIT"),
    ("commit", "report path: COMMIT's round trip"),
    ("to_response", "report path: ours, COMMIT to response"),
)


@dataclass
class Timeline:
    """The moments along one report's path, from the application's and the engine's events:
    the request in, each statement sent and its answer back, the COMMIT sent and done, the
    response out."""

    recording: bool = False
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        if self.recording:
            self.marks.append((what, time.perf_counter()))

    def start(self) -> None:
        self.marks.clear()
        self.recording = True

    def phases(self) -> dict[str, float] | None:
        """Milliseconds in each of ``PHASES`` for the report just recorded; None where another
        transaction ran beside it (a heartbeat's), which would mix its moments in."""
        self.recording = False
        at: dict[str, list[float]] = {}
        for what, moment in self.marks:
            at.setdefault(what, []).append(moment)
        sent, back = at.get("sent", []), at.get("back", [])
        alone = len(at.get("commit", [])) == len(at.get("committed", [])) == 1
        if not sent or len(sent) != len(back) or not alone:
            return None
        seconds = {
            "to_first_statement": sent[0] - at["request"][0],
            "statements": sum(b - s for s, b in zip(sent, back, strict=True)),
            "between_statements": sum(s - b for b, s in zip(back, sent[1:], strict=False)),
            "to_commit": at["commit"][0] - back[-1],
            "commit": at["committed"][0] - at["commit"][0],
            "to_response": at["response"][0] - at["committed"][0],
        }
        return {name: value * 1000 for name, value in seconds.items()}

    def listen(self, engine: AsyncEngine) -> Callable[[], None]:
        """Listen to the writers' engine and to every session's commit; returns the undoing."""
        hooks: list[tuple[Any, str, Callable[..., None]]] = [
            (engine.sync_engine, "before_cursor_execute", lambda *_: self.mark("sent")),
            (engine.sync_engine, "after_cursor_execute", lambda *_: self.mark("back")),
            (engine.sync_engine, "commit", lambda *_: self.mark("commit")),
            (Session, "after_commit", lambda *_: self.mark("committed")),
        ]
        for target, name, hook in hooks:
            event.listen(target, name, hook)

        def undo() -> None:
            for target, name, hook in hooks:
                event.remove(target, name, hook)

        return undo

    def around(self, app: ASGIApp) -> ASGIApp:
        """``app``, marking the request's arrival and the response's start."""

        async def marked(scope: Scope, receive: Receive, send: Send) -> None:
            self.mark("request")

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.mark("response")
                await send(message)

            await app(scope, receive, sending)

        return marked


def run(report: Report, args: argparse.Namespace) -> None:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    leaders = args.leaders[0]
    for backend in backends:
        runs = [asyncio.run(_one_run(backend, leaders, args.reports)) for _ in range(args.reps)]
        for n, costs in enumerate(runs):
            say(
                f"    {backend}, run {n + 1}: "
                + ", ".join(f"{label} {costs[(w, m)]:.2f} ms" for w, m, label in METRICS)
            )
            for what, label in (("position", "a position fix"), ("view", "an incident's view")):
                say(
                    f"      {label}: "
                    + ", ".join(f"{m} {costs[(what, m)]:.2f} ms" for m in BARE_MEASURES)
                )
            say(
                "      along the path: "
                + ", ".join(f"{name} {costs[('path', name)]:.2f} ms" for name, _ in PHASES)
            )
            if bare_keys(costs):
                say(
                    "      the bare endpoint: "
                    + ", ".join(f"{m} {costs[(w, m)]:.2f} ms" for w, m in bare_keys(costs))
                )
        measured = [*METRICS, *(("path", name, label) for name, label in PHASES)]
        keys = [(w, m) for w, m, _ in measured]
        report.raw[f"work-{backend}-{leaders}"] = [
            {f"{w}_{m}_ms": c[(w, m)] for w, m in [*keys, *bare_keys(c)]} for c in runs
        ]
        for what, measure, label in measured:
            if measure == "database" and backend != "postgresql":
                continue
            ours = [c[(what, measure)] for c in runs]
            bare = [c[("bare", measure)] for c in runs if ("bare", measure) in c]
            report.rows.append(
                Row(
                    "work",
                    f"{leaders // 1000}k leaders, {backend}, in-process",
                    label,
                    "ms",
                    Figure.of(ours),
                    baseline=Figure.of(bare) if what == "report" and bare else None,
                    ratio=ratios(ours, bare) if what == "report" and bare else None,
                )
            )


def bare_keys(costs: dict[tuple[str, str], float]) -> list[tuple[str, str]]:
    """The baseline's figures in ``costs`` (PostgreSQL only)."""
    return [("bare", m) for m in BARE_MEASURES if ("bare", m) in costs]


async def _one_run(backend: str, leaders: int, reports: int) -> dict[tuple[str, str], float]:
    town, points = bench_town(leaders)
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{folder}/work.db"
            return await _measure(url, town, points, reports)
    async with scratch_postgres("bench_work") as dsn:
        costs = await _measure(sqlalchemy_url(dsn), town, points, reports)
        costs.update(await _measure_bare(dsn, points, reports))
        return costs


def report_body(points: list[tuple[float, float, int]], n: int) -> dict[str, Any]:
    lon, lat, _ = points[n % len(points)]
    return {"location": {"lon": lon, "lat": lat}, "category": "fight"}


async def _measure_bare(
    dsn: str, points: list[tuple[float, float, int]], reports: int
) -> dict[tuple[str, str], float]:
    """The intake benchmark's baseline (a bare FastAPI endpoint inserting one row with
    asyncpg) posted the same bodies the same way, in the same run: the box's speed at that
    moment, for the report's figures to be read as ratios."""
    app = create_bare_app(dsn)
    costs = Costs()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for n in range(WARMUP + reports):
                body = report_body(points, n)
                posted = await _timed(http.post("/api/v1/incidents", json=body))
                if posted[0].status_code != 201:
                    raise RuntimeError(f"bare report refused: {posted[0].status_code}")
                if n >= WARMUP:
                    costs.count += 1
                    costs.add("bare", *posted[1:])
    return costs.per_item()


async def _measure(
    url: str, town: Town, points: list[tuple[float, float, int]], reports: int
) -> dict[tuple[str, str], float]:
    secret = secrets.token_urlsafe(32)
    seeded = await seed_database(url, town, secret=secret)
    app = create_app(in_process_settings(url, secret, "bench-work-secret.key"))
    costs = Costs()
    timeline = Timeline()
    headers = {"Authorization": f"Bearer {seeded.operator_token}"}
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        stop_listening = timeline.listen(runtime.engine)
        transport = httpx.ASGITransport(app=timeline.around(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for n in range(WARMUP + reports):
                body = report_body(points, n)
                timeline.start()
                posted = await _timed(http.post("/api/v1/incidents", json=body, headers=headers))
                path = timeline.phases()
                reply: httpx.Response = posted[0]
                if reply.status_code != 201:
                    raise RuntimeError(f"report refused: {reply.status_code} {reply.text}")
                await acknowledge_alerts(runtime, reply.json())
                flush = await _timed(flush_acknowledgements(runtime))
                if n >= WARMUP:
                    costs.count += 1
                    costs.add("report", *posted[1:])
                    costs.add("flush", *flush[1:])
                    costs.add_path(path)
                # The same report as the console sends it, with its Idempotency-Key (one
                # statement more: the incident is inserted unless the key was used), taking
                # turns with the reports above so that both meet the box alike.
                keyed = {**headers, "Idempotency-Key": f"bench-{n}"}
                body = report_body(points, n + 1)
                posted = await _timed(http.post("/api/v1/incidents", json=body, headers=keyed))
                if posted[0].status_code != 201:
                    raise RuntimeError(f"keyed report refused: {posted[0].status_code}")
                await acknowledge_alerts(runtime, posted[0].json())
                await flush_acknowledgements(runtime)
                if n >= WARMUP:
                    costs.add_apart("keyed", *posted[1:])
            await _measure_fixes(http, seeded, reply.json(), costs)
        stop_listening()
    return costs.per_item()


def in_process_settings(url: str, secret: str, secret_name: str) -> Settings:
    """The application's settings for a loop of reports in-process."""
    return Settings(
        database_url=url,
        secret_key=secret,
        secret_file=Path(tempfile.gettempdir()) / secret_name,
        # As in the alert benchmark: no escalation or breach lands among the measured reports.
        escalation_after_s=3600,
        chain_targets=(3600, 3600, 3600),
        report_burst=1_000_000,
        report_per_min=1_000_000,
        # The flushes are called here, one a report; the recorder's own task stays asleep.
        ack_gather_ms=1000,
        log_level="WARNING",
    )


async def _measure_fixes(
    http: httpx.AsyncClient, seeded: Seeded, incident: dict[str, Any], costs: Costs
) -> None:
    """A leader whose team accepted the last report, sending fixes from 2 km off: what every
    travelling leader's phone costs the server every few seconds (``POSITION_EVERY_MS`` in the
    phone's page), a fix that records nothing. Then the same leader reading the incident."""
    tokens = {leader.team_id: leader.token for leader in seeded.leaders}
    dispatch = next(d for d in incident["dispatches"] if d["team_id"] in tokens)
    headers = {"Authorization": f"Bearer {tokens[dispatch['team_id']]}"}
    url = f"/api/v1/dispatches/{dispatch['id']}"
    accepted = await http.post(f"{url}/accept", headers=headers)
    if accepted.status_code != 200:
        raise RuntimeError(f"accept refused: {accepted.status_code} {accepted.text}")
    where = incident["location"]
    fix = {"location": {"lon": where["lon"] + 0.02, "lat": where["lat"]}, "accuracy_m": 10}
    for n in range(2 * FIXES):
        sent = await _timed(http.post(f"{url}/position", json=fix, headers=headers))
        if sent[0].status_code != 200 or sent[0].json()["arrived"]:
            raise RuntimeError(f"position fix: {sent[0].status_code} {sent[0].text}")
        if n >= FIXES:
            costs.add_apart("position", *sent[1:])
    for n in range(2 * FIXES):
        read = await _timed(http.get(f"/api/v1/incidents/{incident['id']}", headers=headers))
        if read[0].status_code != 200:
            raise RuntimeError(f"incident view: {read[0].status_code} {read[0].text}")
        if n >= FIXES:
            costs.add_apart("view", *read[1:])


async def _timed(work: Any) -> tuple[Any, float, float, float]:
    # Reading /proc costs this process a millisecond or two: done outside the clocks.
    database = database_cpu_s()
    wall = time.perf_counter()
    cpu = time.process_time()
    result = await work
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return result, cpu, wall, database_cpu_s() - database


async def acknowledge_alerts(runtime: Runtime, incident: dict[str, Any]) -> None:
    """Hand the recorder what the phones would: each alert's seq, acknowledged now."""
    refs = [d["id"] for d in incident["dispatches"]]
    # From the report's time on (its alerts are stored at it), by the messages' index on it:
    # by the references alone, PostgreSQL read every message stored so far, between the
    # measured requests, a few milliseconds more at every report of a run.
    since = datetime.fromisoformat(incident["reported_at"])
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(MESSAGES.c.user_id, MESSAGES.c.seq).where(
                MESSAGES.c.created_at >= since,
                MESSAGES.c.type == "alert",
                MESSAGES.c.ref.in_(refs),
            )
        )
        alerts = rows.all()
    if not alerts:
        raise RuntimeError(f"no alert of the report {incident['id']} was found to acknowledge")
    now = runtime.clock.now()
    for user_id, seq in alerts:
        _recorder(runtime).submit(user_id, seq, now)


async def flush_acknowledgements(runtime: Runtime) -> None:
    if not await _recorder(runtime).flush():
        raise RuntimeError("the acknowledgements could not be recorded")


def _recorder(runtime: Runtime) -> AckRecorder:
    if runtime.acks is None:
        raise RuntimeError("the application started without its acknowledgement recorder")
    return runtime.acks
