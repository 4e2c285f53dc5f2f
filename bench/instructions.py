"""Instructions per request, counted by callgrind: a report's CPU as the box's swing leaves it.

The other benchmarks time what the box gives them, and on the shared 2-core box the same code's
CPU per report swings by a third from one hour to the next. Instructions do not: the same code
on the same inputs executes the same instructions, whatever else the machine is doing. So the
work benchmark's loop runs here again in a process of its own under valgrind's callgrind
(``--instr-atstart=no``: nothing is counted until asked), and counting is switched on
(``callgrind_control -i on``) just around each measured request, or each flush of
acknowledgements, and off again after it. Each kind is counted over ``--counted`` of them in a
row and dumped under its name; the count of switching on and off around nothing, measured as
often, is taken off. Python's cyclic garbage collector is paused while they are counted: a
collection lands in one request or another, and moved the counts of runs of the same code by
several per cent.

Counted (the application's own process only; the database's work is not, nor the kernel's):
a report without a key, as the alert and intake benchmarks post it; the same with an
``Idempotency-Key``, as the console posts it; the flush that records a report's
acknowledgements; the floor under every request of the application's own, an operator's
``GET /api/v1/auth/me`` (the middleware, the token's check, a unit of work reading one row,
the answer); the in-process client alone, posting the report to an app that answers at once
(every count holds that part); and on PostgreSQL, as the baseline, the intake benchmark's bare
endpoint inserting one row with asyncpg, posted the same way. The client's part is also taken
off the report, the floor and the bare endpoint alike, for the servers' own ratio. Needs
Debian's ``valgrind`` (which brings ``callgrind_control``); skipped with a note without it.
A run takes a few minutes: the process runs some fifty times slower under callgrind. A
report's count grows with its recipients, and every run counts the same incidents in the same
order: runs are compared at the same ``--counted``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts.fanout import asyncpg_dsn
from bench.alert import bench_town
from bench.bare_intake import create_app as create_bare_app
from bench.common import Figure, Report, Row, ratios, say, scratch_postgres, sqlalchemy_url
from bench.work import acknowledge_alerts, flush_acknowledgements, in_process_settings, report_body
from dispatch.app import create_app
from dispatch.runtime import Runtime
from dispatch.simulate.seed import seed_database

WARMUP = 20
# What is counted, the label of each kind in the table, and whether the bare endpoint is its
# baseline.
KINDS = (
    ("report", "report: instructions", True),
    ("keyed", "report with an Idempotency-Key (the console's): instructions", False),
    ("flush", "flush of its acks: instructions", False),
    ("floor", "an operator's GET /api/v1/auth/me (a token, one row read): instructions", True),
    (
        "client",
        "the in-process client alone, its report answered at once (in each count above): "
        "instructions",
        False,
    ),
)
# The client's part taken off the kind and the bare endpoint alike: the servers' own ratio.
SERVERS_ONLY = (
    ("report", "report, the client's part taken off: instructions"),
    ("floor", "GET /api/v1/auth/me, the client's part taken off: instructions"),
)
CLIENT = "client"
# The background tasks that go to the database every second or so (the deadlines' and jobs'
# timer, the presence heartbeat) and the clock's check, an hour apart. A request runs some fifty
# times slower under callgrind, so at their pace they ran inside most counted requests: some 2M
# a report of 20 counted one at a time, where they land in one request in a hundred at full speed.
QUIET = {"timer_poll_s": 3600.0, "presence_heartbeat_s": 3600.0, "clock_check_s": 3600.0}
# Switching counting on and off around nothing: taken off every count, and shown.
NOTHING = "switching"
BARE = "bare"
MILLION = 1e6


def run(report: Report, args: argparse.Namespace) -> None:
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        report.note(f"instructions: skipped, {' and '.join(missing)} not found (Debian's valgrind)")
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    leaders = args.leaders[0]
    for backend in backends:
        runs = [
            _counted_run(backend, leaders, args.counted, args.work, _kept(args.profile, backend, n))
            for n in range(args.reps)
        ]
        for n, counts in enumerate(runs):
            say(
                f"    {backend}, run {n + 1}: "
                + ", ".join(f"{kind} {value / MILLION:.2f}M" for kind, value in counts.items())
            )
        report.raw[f"instructions-{backend}-{leaders}"] = runs
        bare = [c[BARE] / MILLION for c in runs if BARE in c]
        for kind, label, against_bare in KINDS:
            ours = [c[kind] / MILLION for c in runs]
            compared = against_bare and bool(bare)
            report.rows.append(
                Row(
                    "instructions",
                    f"{leaders // 1000}k leaders, {backend}, in-process",
                    label,
                    "M",
                    Figure.of(ours),
                    baseline=Figure.of(bare) if compared else None,
                    ratio=ratios(ours, bare) if compared else None,
                )
            )
        if bare:
            _servers_only(report, runs, f"{leaders // 1000}k leaders, {backend}, in-process")


def _servers_only(report: Report, runs: list[dict[str, float]], case: str) -> None:
    """Every count holds the in-process client's work: taken off both sides, the ratio is the
    application's against the bare endpoint's alone."""
    bare = [(c[BARE] - c[CLIENT]) / MILLION for c in runs]
    for kind, label in SERVERS_ONLY:
        ours = [(c[kind] - c[CLIENT]) / MILLION for c in runs]
        report.rows.append(
            Row(
                "instructions",
                case,
                label,
                "M",
                Figure.of(ours),
                baseline=Figure.of(bare),
                ratio=ratios(ours, bare),
            )
        )


def _kept(profile: Path | None, backend: str, n: int) -> Path | None:
    return None if profile is None else profile / f"instructions-{backend}-{n + 1}"


def _counted_run(
    backend: str, leaders: int, count: int, work: Path, keep: Path | None = None
) -> dict[str, float]:
    """One process under callgrind counting ``count`` of each kind; instructions per item.
    With ``keep``, callgrind's dumps are copied there, one a kind (``callgrind_annotate``
    reads them: where the instructions went, by function and by library)."""
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.instructions",
            backend,
            str(leaders),
            str(count),
        ]
        # The same hashes in every run: sets and dicts of strings are walked in the same order.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        log = Path(folder) / "valgrind.log"
        with log.open("w") as sink:
            done = subprocess.run(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the counted run failed ({done.returncode}): {tail}")
        totals = dumped_totals(Path(folder))
        if keep is not None:
            shutil.copytree(folder, keep, dirs_exist_ok=True)
    nothing = totals.pop(NOTHING, 0)
    counts = {kind: (total - nothing) / count for kind, total in totals.items()}
    # Kept beside them, as what was taken off each.
    counts[NOTHING] = nothing / count
    return counts


DUMP = re.compile(r"^desc: Trigger: dump (\w+)$", re.MULTILINE)
TOTALS = re.compile(r"^(?:totals|summary): (\d+)", re.MULTILINE)


def dumped_totals(folder: Path) -> dict[str, int]:
    """The instructions of each dump callgrind wrote in ``folder``, by the name it was given."""
    totals: dict[str, int] = {}
    for path in folder.glob("callgrind.out.*"):
        text = path.read_text(errors="replace")
        named, counted = DUMP.search(text), TOTALS.findall(text)
        if named and counted:
            totals[named.group(1)] = max(int(n) for n in counted)
    return totals


# ---------------------------------------------------------------- the counted process


class Counter:
    """Switches callgrind's counting of this process on and off, and dumps what it counted."""

    def __init__(self) -> None:
        self._pid = str(os.getpid())

    def _control(self, *argv: str) -> None:
        subprocess.run(
            ["callgrind_control", *argv, self._pid], check=True, stdout=subprocess.DEVNULL
        )

    async def around(self, work: Awaitable[Any]) -> Any:
        self._control("-i", "on")
        try:
            return await work
        finally:
            self._control("-i", "off")

    def dump(self, name: str) -> None:
        self._control(f"--dump={name}")


async def _count(backend: str, leaders: int, count: int) -> None:
    counter = Counter()
    async with _database(backend) as url:
        town, points = bench_town(leaders)
        secret = secrets.token_urlsafe(32)
        seeded = await seed_database(url, town, secret=secret)
        settings = in_process_settings(url, secret, "bench-instructions-secret.key")
        app = create_app(settings.model_copy(update=QUIET))
        headers = {"Authorization": f"Bearer {seeded.operator_token}"}
        async with app.router.lifespan_context(app):
            runtime: Runtime = app.state.runtime
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                items = _Items(http, runtime, points, headers)
                for n in range(WARMUP):
                    await items.report(n, keyed=n % 2 == 1)
                await _counted(counter, "report", count, lambda n: items.report(n, post=counter))
                await _counted(
                    counter, "keyed", count, lambda n: items.report(n, keyed=True, post=counter)
                )
                await _counted(counter, "flush", count, lambda n: items.report(n, flush=counter))
                for _ in range(WARMUP):
                    await items.floor()
                await _counted(counter, "floor", count, lambda _: items.floor(counter))
                await _counted(counter, NOTHING, count, lambda _: counter.around(asyncio.sleep(0)))
                # After the switching's count, which stays where the counts before it had it:
                # a background task of the application's landing in its windows moves them all.
                # The in-process client's own part of every count: the report's POST, as it
                # is sent, to an app that does nothing with it.
                await _count_posts(counter, CLIENT, _answer_at_once, points, count, headers)
        if backend == "postgresql":
            await _count_bare(counter, url, points, count)


async def _counted(
    counter: Counter, name: str, count: int, item: Callable[[int], Awaitable[Any]]
) -> None:
    gc.collect()
    gc.disable()
    try:
        for n in range(count):
            await item(WARMUP + n)
    finally:
        gc.enable()
    counter.dump(name)


class _Items:
    """The requests counted, each with what follows it uncounted (its acknowledgements)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        runtime: Runtime,
        points: list[tuple[float, float, int]],
        headers: dict[str, str],
    ) -> None:
        self._http, self._runtime, self._points, self._headers = http, runtime, points, headers

    async def report(
        self,
        n: int,
        *,
        keyed: bool = False,
        post: Counter | None = None,
        flush: Counter | None = None,
    ) -> None:
        """Report the ``n``-th incident, then record its acknowledgements in one flush; the
        POST counted by ``post``, the flush by ``flush``."""
        headers = {**self._headers, "Idempotency-Key": f"counted-{n}"} if keyed else self._headers
        sent = self._http.post(
            "/api/v1/incidents", json=report_body(self._points, n), headers=headers
        )
        reply: httpx.Response = await (post.around(sent) if post else sent)
        if reply.status_code != 201:
            raise RuntimeError(f"report refused: {reply.status_code} {reply.text}")
        await acknowledge_alerts(self._runtime, reply.json())
        flushed = flush_acknowledgements(self._runtime)
        await (flush.around(flushed) if flush else flushed)

    async def floor(self, counter: Counter | None = None) -> None:
        """The operator's own account, read as the console reads it at sign-in."""
        sent = self._http.get("/api/v1/auth/me", headers=self._headers)
        reply: httpx.Response = await (counter.around(sent) if counter else sent)
        if reply.status_code != 200:
            raise RuntimeError(f"the account's read refused: {reply.status_code} {reply.text}")


async def _answer_at_once(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that reads the request's body and answers 201 with a small JSON body."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"id":"counted"}'})


async def _count_bare(
    counter: Counter, url: str, points: list[tuple[float, float, int]], count: int
) -> None:
    """The intake benchmark's bare endpoint, on the same database, posted the same way."""
    app = create_bare_app(asyncpg_dsn(url))
    async with app.router.lifespan_context(app):
        await _count_posts(counter, BARE, app, points, count)


async def _count_posts(
    counter: Counter,
    name: str,
    app: ASGIApp,
    points: list[tuple[float, float, int]],
    count: int,
    headers: dict[str, str] | None = None,
) -> None:
    """Reports posted in-process to ``app``, the ones after the warm-up counted as ``name``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def post(n: int, counted: bool) -> None:
            sent = http.post("/api/v1/incidents", json=report_body(points, n), headers=headers)
            reply = await (counter.around(sent) if counted else sent)
            if reply.status_code != 201:
                raise RuntimeError(f"{name}: the report answered {reply.status_code}")

        for n in range(WARMUP):
            await post(n, counted=False)
        await _counted(counter, name, count, lambda n: post(n, counted=True))


@asynccontextmanager
async def _database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{folder}/counted.db"
        return
    async with scratch_postgres("bench_instructions") as dsn:
        yield sqlalchemy_url(dsn)


if __name__ == "__main__":
    asyncio.run(_count(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
