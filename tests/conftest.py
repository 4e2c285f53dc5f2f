"""Shared fixtures: real databases (SQLite and PostgreSQL), a real server on a real socket.

Every test that takes ``world`` runs once per backend in DISPATCH_TEST_BACKENDS
(default: sqlite,postgresql).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from sqlalchemy import Table
from sqlalchemy.engine import make_url

from alerts.models import AlertsBase
from dispatch import migrate, models  # noqa: F401  (every table, for cleaning)
from dispatch.app import create_app
from dispatch.clock import Clock, ManualClock
from dispatch.config import Settings
from dispatch.db import Base, create_engine
from dispatch.websocket_protocol import WebSocketProtocol
from tests.support import World

PG_ADMIN_DSN = os.environ.get("DISPATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = os.environ.get("DISPATCH_TEST_BACKENDS", "sqlite,postgresql").split(",")
# An instant (ISO 8601 with its offset, e.g. 2026-11-30T23:59:30+08:00) at which the test
# servers' clocks start instead of the host's now: a test that only passes at some hours of the
# day, or away from a month's or a week's end, shows itself when run at the edge on purpose.
CLOCK_START = os.environ.get("DISPATCH_TEST_CLOCK_START", "")


def clock_start() -> datetime | None:
    """The instant DISPATCH_TEST_CLOCK_START names, or None: the host's now."""
    if not CLOCK_START:
        return None
    start = datetime.fromisoformat(CLOCK_START)
    if start.tzinfo is None:
        raise ValueError(f"DISPATCH_TEST_CLOCK_START needs an offset: {CLOCK_START!r}")
    return start


def settle_garbage_between_tests() -> None:
    """Collect what the test that ended left as garbage, and freeze the rest out of the
    garbage collector's passes.

    Every test's servers run in this one process, on the event loop that drives the test, and
    a full pass of the collector stops them all. Left as Python sets it, such a pass walks
    every object the session holds, which grows test after test (1.3 million objects after
    160 tests): over a second of CPU, which a loaded two-core box stretched to 5-11 s inside
    whichever test it fell in, a request in flight answered that much later. Frozen between
    tests, the passes inside a test walk only what that test made. What turns into garbage
    only after its test is over stays (a few objects in a hundred)."""
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    # The modules and what collecting the tests made live as long as the session.
    settle_garbage_between_tests()


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    # Called once the test's fixtures are torn down: its servers are stopped.
    settle_garbage_between_tests()


def every_table_child_first() -> list[Table]:
    tables = [*Base.metadata.sorted_tables, *AlertsBase.metadata.sorted_tables]
    return list(reversed(tables))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    async with fresh_database(backend, tmp_path_factory.mktemp("sqlite")) as url:
        yield url


def database_url_named(name: str) -> str:
    """The URL of the database ``name`` on the tests' server, reached as ``PG_ADMIN_DSN``
    reaches it (its host and port, or its socket)."""
    url = make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def pg_admin() -> AsyncIterator[asyncpg.Connection]:
    """A connection to PostgreSQL's maintenance database, for what a test does to a whole
    database (create, drop, refuse or end its connections)."""
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new PostgreSQL database at the newest migration, dropped afterwards."""
    name = f"dispatch_test_{uuid.uuid4().hex[:12]}"
    async with pg_admin() as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url_named(name)
    try:
        await migrate.upgrade_async(url)
        yield url
    finally:
        async with pg_admin() as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(backend: str, folder: Path) -> AsyncIterator[str]:
    """A database of its own at the newest migration (a SQLite one in ``folder``)."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / 'dispatch.db'}"
        await migrate.upgrade_async(url)
        yield url
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def postgres_only() -> AsyncIterator[str]:
    """For what only PostgreSQL does (several processes on one database)."""
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def clean_database(database_url: str) -> str:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        for table in every_table_child_first():
            await connection.execute(table.delete())
    await engine.dispose()
    return database_url


@pytest.fixture
def settings(clean_database: str, tmp_path: Path) -> Settings:
    return server_settings(clean_database)


def server_settings(database_url: str) -> Settings:
    """A test server's settings: the production defaults but for speed and a secret of its own."""
    return Settings(
        database_url=database_url,
        secret_key="test-secret-" + uuid.uuid4().hex,
        chain_targets=(60.0, 180.0, 300.0),
        timer_poll_s=0.2,
        ws_hello_timeout_s=1.0,
        # Cheap hashing keeps the suite quick; production keeps the argon2-cffi defaults.
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        # Hundreds of servers start in this one process: its collector stays as Python sets it.
        gc_settle=False,
        # ... and build only the routes their requests reach.
        warm_routes=False,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(clock_start())


class PromptServer(uvicorn.Server):
    """uvicorn's server, which looks whether it should exit every 0.1 s between its ticks; this
    one also wakes the moment it is told to stop (hundreds of servers stop in one run)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.told_to_exit = asyncio.Event()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.told_to_exit.wait(), 0.1)

    def exit(self) -> None:
        self.should_exit = True
        self.told_to_exit.set()


class RunningServer:
    """The app under a real uvicorn on a real port, in this event loop."""

    def __init__(
        self, settings: Settings, clock: ManualClock, *, server_clock: Clock | None = None
    ) -> None:
        """``server_clock``: the server's own, for a test of the production clock; ``clock``
        then only stamps what the test sets up directly (accounts)."""
        self.settings = settings
        self.clock = clock
        self.port = free_port()
        self.app = create_app(settings, clock if server_clock is None else server_clock)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            ws=WebSocketProtocol,
            ws_per_message_deflate=False,
            ws_max_size=settings.ws_max_frame_bytes,
            ws_ping_interval=settings.ws_ping_interval_s,
            ws_ping_timeout=settings.ws_ping_timeout_s,
            log_level="warning",
            lifespan="on",
        )
        self.server = PromptServer(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.exit()
        if self.task is not None:
            await self.task


@asynccontextmanager
async def two_servers_on(
    settings: Settings, second: Settings | None = None
) -> AsyncIterator[tuple[World, World]]:
    """Two servers sharing one database and one driven clock, as two processes would; the
    second with ``second`` where it reaches the database another way."""
    clock = ManualClock(clock_start())
    servers = [RunningServer(settings, clock), RunningServer(second or settings, clock)]
    for server in servers:
        await server.start()
    worlds = [World(s.app, f"http://127.0.0.1:{s.port}", clock) for s in servers]
    try:
        yield worlds[0], worlds[1]
    finally:
        for world in worlds:
            await world.close()
        for server in servers:
            await server.stop()


@pytest.fixture
async def server(settings: Settings, clock: ManualClock) -> AsyncIterator[RunningServer]:
    running = RunningServer(settings, clock)
    await running.start()
    yield running
    await running.stop()


@asynccontextmanager
async def world_serving(
    settings: Settings, clock: ManualClock, *, server_clock: Clock | None = None
) -> AsyncIterator[World]:
    """A server of its own on ``settings`` and the world seen from outside it, both stopped
    when the block ends."""
    running = RunningServer(settings, clock, server_clock=server_clock)
    await running.start()
    world = World(running.app, f"http://127.0.0.1:{running.port}", clock)
    try:
        yield world
    finally:
        await world.close()
        await running.stop()


@pytest.fixture
async def world(server: RunningServer) -> AsyncIterator[World]:
    world = World(server.app, f"http://127.0.0.1:{server.port}", server.clock)
    yield world
    await world.close()


@pytest.fixture
def artifacts() -> Iterator[Path]:
    path = Path(os.environ.get("DISPATCH_TEST_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    yield path
