"""The application factory. Everything stateful is built in the lifespan, nothing at import."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from alerts.acks import AckRecorder
from alerts.hub import Hub
from dispatch import fanout, migrate
from dispatch.asgi import DispatchApp
from dispatch.audit.routes import router as audit_router
from dispatch.auth import service as auth
from dispatch.auth.cache import Principals
from dispatch.auth.routes import router as auth_router
from dispatch.clock import Clock, StepWatch, SystemClock, check_against_record
from dispatch.config import Settings
from dispatch.db import create_engine, create_read_engine, create_sessionmaker
from dispatch.deps import RuntimeDep
from dispatch.errors import MIDDLEWARE_RESPONSES, RETRY_AFTER, install_error_handlers
from dispatch.incidents import service as incidents
from dispatch.incidents.routes import dispatches_router, incidents_router
from dispatch.incidents.tasks import ChainDeadlines, job_handlers, purge_old_messages
from dispatch.jobs.tasks import JobQueue, Timer
from dispatch.observability.running import Operations, install_operations
from dispatch.outages import database_unavailable, describe, error_kind
from dispatch.pages.routes import mount_static
from dispatch.pages.routes import router as pages_router
from dispatch.reachability import service as reachability
from dispatch.realtime import record_acknowledged, record_skipped, websocket_endpoint
from dispatch.realtime import router as realtime_router
from dispatch.reports.routes import router as reports_router
from dispatch.rosters import service as rosters
from dispatch.rosters.book import Duties, DutyBook
from dispatch.rosters.files import XLSX_TYPE
from dispatch.rosters.routes import router as rosters_router
from dispatch.runtime import Runtime, load_secret
from dispatch.security.middleware import BodyLimit
from dispatch.teams import service as teams
from dispatch.teams.coverage import Coverage
from dispatch.teams.routes import router as teams_router
from dispatch.villages import service as village_service
from dispatch.villages.index import VillageIndex, Villages
from dispatch.villages.routes import coverage_router
from dispatch.villages.routes import router as villages_router

log = logging.getLogger(__name__)

DESCRIPTION = """
Incidents in, covering teams alerted over websockets, the 1-3-5 minute chain on record.
Every route but `POST /api/v1/auth/token`, the health checks, `/metrics` and the pages needs
`Authorization: Bearer`.
The websocket protocol at `/ws` is described in docs/api.md.
"""


# Routes that take a file as the raw body: capped at max_upload_bytes, not max_body_bytes.
UPLOAD_ROUTES = ("/api/v1/rosters/import", "/api/v1/villages/import")

# Answers from this size on are gzipped for clients that accept it: a city's teams are
# megabytes of JSON, seven times smaller gzipped. Below it they go out as written: an
# incident's 201 (some 6.5 kB at a city's scale) is on the report-to-alert path, and on a
# local network a few kilobytes cost less to send than to compress.
COMPRESS_MIN_BYTES = 32 * 1024
# zlib's level 5: within 2% of level 9's size on the teams' JSON, in a third of its time
# (3 ms against 8 ms a page of 1000 teams); Starlette compresses 128 KiB and more off the loop.
COMPRESS_LEVEL = 5
# Workbooks are zip files already.
NOT_COMPRESSED = (*DEFAULT_EXCLUDED_CONTENT_TYPES, XLSX_TYPE)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start_runtime(settings or Settings(), clock or SystemClock())
        app.state.runtime = runtime
        if not runtime.settings.is_sqlite:
            runtime.fanout = fanout.listen(runtime)
            await runtime.fanout.start()
        operations = Operations(app, runtime)
        handlers = operations.job_handlers(job_handlers(runtime))
        # The steps first: after a restart, an escalation due before a deadline that also
        # passed meanwhile alerts its ring before the breach, which its leaders then hear of.
        timer = Timer(runtime, [JobQueue(handlers), ChainDeadlines()])
        runtime.acks = AckRecorder(
            runtime.transaction,
            partial(record_acknowledged, runtime),
            gather_s=runtime.settings.ack_gather_ms / 1000,
            skipped=partial(record_skipped, runtime),
        )
        if runtime.settings.warm_routes:
            # Before the collector settles: the handlers live as long as the process.
            build_routes(app)
        if runtime.settings.gc_settle:
            settle_garbage_collector()
        core = [
            asyncio.create_task(runtime.acks.run(), name="acknowledgements"),
            asyncio.create_task(timer.run(), name="chain-timer"),
        ]
        others = [
            asyncio.create_task(purge_old_messages(runtime), name="message-retention"),
            asyncio.create_task(watch_clock(runtime), name="clock-watch"),
            *operations.start(),
        ]
        for task in core:
            watch_task(runtime, task, core=True)
        for task in others:
            watch_task(runtime, task, core=False)
        tasks = [*core, *others]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # One that ended by itself was logged then; the shutdown goes on regardless.
            await asyncio.gather(*tasks, return_exceptions=True)
            # Acknowledgements already received are written before the database goes; while it
            # refuses them, tried again for up to DISPATCH_SHUTDOWN_ACK_FLUSH_S.
            await runtime.acks.drain(runtime.settings.shutdown_ack_flush_s)
            await operations.stop()
            if runtime.fanout is not None:
                await runtime.fanout.stop()
            await runtime.duty.close()
            await runtime.villages.close()
            for engine in runtime.pools().values():
                await engine.dispose()

    app = DispatchApp(
        title="Dispatch 1-3-5",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (auth_router, teams_router, incidents_router, dispatches_router):
        app.include_router(router)
    for router in (reports_router, rosters_router, villages_router, coverage_router):
        app.include_router(router)
    app.include_router(audit_router)
    app.include_router(realtime_router)
    # The same endpoint without the HTTP middleware and router in each open socket's stack.
    app.serve_websocket_directly("/ws", websocket_endpoint)
    app.include_router(pages_router)
    mount_static(app)
    install_operations(app)
    _add_health(app)
    # Websockets pass through untouched (and /ws skips the stack altogether); the bundles at
    # /static/assets are gzipped by their own mount, and an answer already encoded is left so.
    app.add_middleware(
        GZipMiddleware,
        minimum_size=COMPRESS_MIN_BYTES,
        compresslevel=COMPRESS_LEVEL,
        exclude_content_types=NOT_COMPRESSED,
    )
    # Outermost: an oversized body is refused before anything reads it.
    app.add_middleware(BodyLimit, uploads=UPLOAD_ROUTES)
    return app


def build_routes(app: FastAPI) -> None:
    """Build every route's request handler now, before the first request needs it.

    FastAPI keeps an included router's routes as declared and builds what serves them (the
    path's pattern, the analysed dependencies, the body and response models' fields, the
    handler) for all of the router's routes on the first request it matches against, some
    20 ms a router and 0.2 s in all: a fresh worker's first accept built the routers before
    it. Listing the route contexts, as the OpenAPI schema does, builds them and nothing else:
    no request, no database, no state of ours.
    """
    for _ in iter_route_contexts(app.routes):
        pass


# Young objects collected every 50 000 allocations instead of 700: a report allocates
# thousands, and each pass also walked the sockets' objects.
GC_YOUNG_THRESHOLD = 50_000


def settle_garbage_collector() -> None:
    """What exists once the server has started lives as long as the process: freeze it out of
    the collector's passes, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def watch_task(runtime: Runtime, task: asyncio.Task[None], *, core: bool) -> None:
    """Say at once when a background task ends by itself: each runs for the life of the
    process, so ending is a fault (cancelled at shutdown is not). Unwatched, its error was
    logged only at shutdown, and deadlines stopped breaching while /readyz said ready. A core
    task's end makes /readyz answer 503, and `dispatch serve` stops the process (exit 70) for its
    restart policy to start it again."""

    def ended(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        name = task.get_name()
        what = "returned" if error is None else f"{type(error).__name__}: {error}"
        if core:
            # /readyz, which anyone may ask, names the error's class; its text is logged.
            runtime.stopped[name] = "returned" if error is None else type(error).__name__
        log.error(
            "background task %s stopped (%s)%s",
            name,
            what,
            "; /readyz answers 503 until the process is restarted" if core else "",
            exc_info=error,
        )

    task.add_done_callback(ended)


async def watch_clock(runtime: Runtime) -> None:
    """Warn when the host clock steps away from the server's time (it is not followed)."""
    watch = StepWatch(runtime.clock, runtime.settings.clock_step_warn_s)
    await watch.run(runtime.settings.clock_check_s)


async def start_runtime(settings: Settings, clock: Clock) -> Runtime:
    unknown = await migrate.upgrade_async(settings.database_url, settings.db_host_timeout_s)
    release = await asyncio.to_thread(migrate.Release.read)
    if unknown:
        log.warning(
            "the database is at revision %s, which this release does not know (its newest is "
            "%s): a newer release migrated it; serving without migrating",
            ", ".join(unknown),
            ", ".join(sorted(release.heads)),
        )
    url, waited = settings.database_url, settings.db_pool_timeout_s
    # Its transactions lock the rows every report shares: a server gone dark in one (its host
    # off) must not hold them until the database notices the connection dead.
    idle_s = settings.db_idle_in_transaction_s
    dark_s = settings.db_host_timeout_s
    engine = create_engine(
        url,
        settings.db_pool_size,
        0,
        waited,
        idle_in_transaction_s=idle_s,
        host_timeout_s=dark_s,
    )
    readers = settings.db_read_pool_size
    read_engine = await create_read_engine(engine, url, readers, waited, dark_s)
    sessionmaker = create_sessionmaker(engine)
    coverage = Coverage()

    async def load_villages() -> VillageIndex:
        async with sessionmaker(bind=read_engine) as session:
            return await village_service.load_index(session)

    villages = Villages(load_villages)
    async with sessionmaker() as session:
        # The host's time against the record's (a restart after a clock that ran fast, a
        # host behind the others): told, not followed (dispatch.clock).
        check_against_record(clock.now(), await incidents.newest_on_record(session))
        await teams.load_coverage(session, coverage)
        villages.replace(await village_service.load_index(session))

    async def load_duties() -> Duties:
        async with sessionmaker() as session:
            return await rosters.load_duties(session)

    duty = DutyBook(load_duties)
    await duty.load()
    log.info("coverage index loaded with %d teams, %d villages", len(coverage), len(villages.index))
    return Runtime(
        settings=settings,
        clock=clock,
        engine=engine,
        read_engine=read_engine,
        sessionmaker=sessionmaker,
        hub=Hub(settings.ws_queue_size, clock.now),
        coverage=coverage,
        villages=villages,
        duty=duty,
        secret=load_secret(settings),
        passwords=auth.password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib),
        principals=Principals(settings.principal_cache_s),
        release=release,
    )


class Readiness(BaseModel):
    status: str = Field(description="ready, or what is missing")
    fanout: str | None = Field(default=None, description="when ready: connected, or off (SQLite)")
    detail: str | None = Field(
        default=None,
        description="when not ready for a database error, its kind (connection, locked, ...); "
        "for a background task stopped, each task and its error's class. The text is logged",
    )


def _add_health(app: FastAPI) -> None:
    # Outside api_router: the body-size and NUL checks' answers are declared here.
    @app.get("/healthz", tags=["health"], responses=MIDDLEWARE_RESPONSES)
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={
            **MIDDLEWARE_RESPONSES,
            200: {"model": Readiness, "description": "ready"},
            503: {
                "model": Readiness,
                "description": "not ready: status (and detail) say why",
                "headers": RETRY_AFTER,
            },
        },
    )
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        """The deadline timer and the acknowledgements' recorder run, the database answers and
        takes writes, its schema is not behind the newest migration, and (on PostgreSQL) the
        fan-out listener that brings other processes' messages is connected."""
        if runtime.stopped:
            stopped = "; ".join(f"{name}: {what}" for name, what in runtime.stopped.items())
            return _not_ready({"status": "background task stopped", "detail": stopped})
        try:
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            schema = await migrate.schema_state(runtime.engine, runtime.release)
        except Exception as error:
            # Anyone may ask (nginx passes /readyz): the driver's text, which may name the
            # database's host, port or name, goes to the log, and the answer only its kind.
            kind = error_kind(error)
            log.warning("/readyz: the database did not answer (%s): %s", kind, describe(error))
            return _not_ready({"status": "unavailable", "detail": kind})
        # Ahead (a newer release migrated it, a rolling upgrade): still ready.
        if schema is migrate.Schema.BEHIND:
            return _not_ready({"status": "migrations pending"})
        if runtime.writes.failing and not await _writes_again(runtime):
            writes = runtime.writes
            log.warning(
                "/readyz: the database refuses writes (%s): %s", writes.last_kind, writes.last_error
            )
            return _not_ready({"status": "database refuses writes", "detail": writes.last_kind})
        fanout = getattr(runtime, "fanout", None)
        if fanout is not None and not fanout.connected:
            return _not_ready({"status": "fan-out listener disconnected"})
        return JSONResponse({"status": "ready", "fanout": "off" if fanout is None else "connected"})


# When a probe that was told "not ready" may ask again (every 503 carries Retry-After).
READY_RETRY_AFTER_S = 5


def _not_ready(body: dict[str, str | None]) -> JSONResponse:
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(READY_RETRY_AFTER_S)})


async def _writes_again(runtime: Runtime) -> bool:
    """After a unit of work met a database outage: whether a write succeeds now. The write is
    this process's presence heartbeat (one row), so a server that a load balancer stopped
    sending requests to still finds out that it can serve again."""
    try:
        async with runtime.transaction() as session:
            await reachability.heartbeat(session, runtime.origin, runtime.clock.now())
    except Exception as error:
        if not database_unavailable(error):
            raise
        return False
    runtime.writes.succeeded()
    return True
