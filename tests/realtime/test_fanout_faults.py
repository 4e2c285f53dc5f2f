"""The fan-out between processes when reading fails (PostgreSQL, two servers on one database):
an announcement that cannot be acted on is made up for, and the listener never dies silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout

from alerts.fanout import APPLICATION_NAME, KEEPALIVE_S
from dispatch.clock import ManualClock
from dispatch.reachability import service as reachability
from tests.conftest import RunningServer, clock_start, pg_admin, server_settings, two_servers_on
from tests.support import World, sync_engines


@pytest.fixture
async def two_servers(postgres_only: str) -> AsyncIterator[tuple[World, World]]:
    async with two_servers_on(server_settings(postgres_only)) as pair:
        yield pair


@contextmanager
def failing(world: World, marker: str, times: int, error: Exception) -> Iterator[list[int]]:
    """The server's statements containing ``marker`` fail ``times`` times (-1: always)."""
    left = [times]

    def refuse(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if marker in statement and left[0] != 0:
            left[0] -= 1
            raise error

    engines = sync_engines(world.runtime)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield left
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", refuse)


BATCH_READ = "WHERE messages.batch ="


@pytest.mark.parametrize("failures", [1, -1])
async def test_an_alert_from_another_process_arrives_though_reading_its_batch_fails(
    two_servers: tuple[World, World], failures: int
) -> None:
    a, b = two_servers
    team = await a.team()
    leader = await a.leader(team)
    operator = await a.operator()
    phone = await b.connect(leader)
    # Once: read again. Always: the process catches every socket up from the store instead.
    with failing(b, BATCH_READ, failures, PoolTimeout("pool exhausted")):
        incident = await a.report(operator)
        alert = await phone.next_of("alert", timeout=15)
    assert alert["data"]["incident"]["id"] == incident["id"]
    await phone.close()


async def test_the_listener_connects_with_the_options_of_the_database_url(
    postgres_only: str,
) -> None:
    """The URL's options reach the LISTEN connection as they reach the pools, as keyword
    arguments of asyncpg.connect (docs/deploy.md: ``?ssl=require`` for managed PostgreSQL).
    Made from a DSN, asyncpg sent them to PostgreSQL as settings, which refused every
    listener connection: /readyz said 503 for ever and no alert crossed."""
    options = "ssl=prefer&command_timeout=30&prepared_statement_cache_size=500"
    async with two_servers_on(server_settings(f"{postgres_only}?{options}")) as (a, b):
        team = await a.team()
        leader = await a.leader(team)
        operator = await a.operator()
        phone = await b.connect(leader)
        for world in (a, b):
            assert world.runtime.fanout is not None and world.runtime.fanout.connected
            assert (await world.http.get("/readyz")).status_code == 200
        incident = await a.report(operator)
        alert = await phone.next_of("alert", timeout=10)
        assert alert["data"]["incident"]["id"] == incident["id"]
        await phone.close()


async def listener_backends(database_url: str) -> list[int]:
    # By name: the query a listener shows is its LISTEN only until its first keep-alive.
    name = make_url(database_url).database
    async with pg_admin() as admin:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            name,
            APPLICATION_NAME,
        )
    return [row["pid"] for row in rows]


async def test_a_listener_whose_catch_up_fails_keeps_trying_and_says_it_is_not_ready(
    two_servers: tuple[World, World],
) -> None:
    a, b = two_servers
    team = await a.team()
    leader = await a.leader(team)
    operator = await a.operator()
    phone = await b.connect(leader)
    url = b.runtime.settings.database_url
    # The catch-up after a reconnect reads the teams first: make that fail, for a while.
    with failing(b, "FROM teams", -1, PoolTimeout("pool exhausted")) as left:
        async with pg_admin() as admin:
            for pid in await listener_backends(url):
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
        # The listener notices the lost connection and fails its catch-up, in its own time.
        deadline = asyncio.get_running_loop().time() + 20
        while (ready := await b.http.get("/readyz")).status_code != 503:
            assert asyncio.get_running_loop().time() < deadline, ready.text
            await asyncio.sleep(0.05)
        left[0] = 0
    # Once the database answers again the listener catches up and hears what comes next.
    for _ in range(100):
        if (await b.http.get("/readyz")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert (await b.http.get("/readyz")).status_code == 200
    incident = await a.report(operator)
    alert = await phone.next_of("alert", timeout=10)
    assert alert["data"]["incident"]["id"] == incident["id"]
    await phone.close()


async def test_sockets_catch_up_once_a_listener_whose_first_connection_failed_comes_up(
    postgres_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process starts serving after waiting 10 s for its listener: alerts other processes
    announced before the listener came up reach its sockets once it does."""
    settings = server_settings(postgres_only)
    clock = ManualClock(clock_start())
    b = RunningServer(settings, clock)
    await b.start()
    connect = asyncpg.connect
    refused = asyncio.Event()
    database_up = asyncio.Event()

    async def refusing_listeners(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "fanout-listener" and not database_up.is_set():
            refused.set()
            raise OSError("the database refuses connections for now")
        return await connect(*args, **kwargs)

    # B listens already; A's listener is refused until the database is up for it.
    monkeypatch.setattr(asyncpg, "connect", refusing_listeners)
    a = RunningServer(settings, clock)
    await a.start()
    worlds = [World(s.app, f"http://127.0.0.1:{s.port}", clock) for s in (a, b)]
    try:
        on_a, on_b = worlds
        assert refused.is_set() and not a.app.state.runtime.fanout.connected
        team = await on_b.team()
        leader = await on_b.leader(team)
        phone = await on_a.connect(leader)
        incident = await on_b.report(await on_b.operator())
        database_up.set()
        alert = await phone.next_of("alert", timeout=15)
        assert alert["data"]["incident"]["id"] == incident["id"]
        assert a.app.state.runtime.fanout.connected
        await phone.close()
    finally:
        for world in worlds:
            await world.close()
        await a.stop()
        await b.stop()


async def test_a_listener_that_came_up_starts_its_backoff_anew_however_its_connection_ends(
    postgres_only: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused a few times, the listener waits longer each time (0.1 s, doubling); once up,
    the next drop is a trouble of its own and it reconnects at once, also when the connection
    ends in an error (a keep-alive that fails) rather than through its termination. It waited
    as long as after the failures before it had come up (up to 5 s)."""
    connect = asyncpg.connect
    refusals = [4]

    async def refused_at_first(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "fanout-listener" and refusals[0] > 0:
            refusals[0] -= 1
            raise OSError("the database refuses connections for now")
        return await connect(*args, **kwargs)

    fetchval = asyncpg.Connection.fetchval
    breaking = asyncio.Event()

    async def keepalive_breaks(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        if breaking.is_set() and task is not None and task.get_name() == "fanout-listener":
            breaking.clear()
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        return await fetchval(self, *args, **kwargs)

    def pauses() -> list[str]:
        # The pause the listener chose after each failure, as it logged it.
        said = [r.getMessage() for r in caplog.records if r.name == "alerts.fanout"]
        return [m.rsplit(" ", 1)[1] for m in said if "; reconnecting in " in m]

    caplog.set_level(logging.WARNING, logger="alerts.fanout")
    monkeypatch.setattr(asyncpg, "connect", refused_at_first)
    monkeypatch.setattr(asyncpg.Connection, "fetchval", keepalive_breaks)
    server = RunningServer(server_settings(postgres_only), ManualClock(clock_start()))
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        fanout = server.app.state.runtime.fanout
        # Up after four refusals, each pause twice the last: the next would have been 1.6 s.
        assert fanout.connected and refusals == [0]
        assert pauses() == ["0.1s", "0.2s", "0.4s", "0.8s"]
        breaking.set()
        deadline = loop.time() + KEEPALIVE_S + 5
        while fanout.connected:
            assert loop.time() < deadline, "the keep-alive never ran"
            await asyncio.sleep(0.01)
        # The keep-alive's error: the listener starts its pauses anew, and comes up again.
        # (The pause it chose, not the time it took: connecting again may take long on a
        # loaded box whatever the pause.)
        lost_at = loop.time()
        while not fanout.connected:
            assert loop.time() < lost_at + 30, "the listener never came up again"
            await asyncio.sleep(0.01)
        assert pauses() == ["0.1s", "0.2s", "0.4s", "0.8s", "0.1s"]
    finally:
        await server.stop()


async def test_a_process_whose_listener_was_cut_off_holds_its_lock_again_once_back(
    two_servers: tuple[World, World],
) -> None:
    """Each process is known alive by the lock its listener's connection holds (the
    notifiers' reconnection grace: a process without it counts as dead). A connection cut
    off (the database restarted, the network dropped) lets the lock go; the listener takes it
    again as it reconnects, so the process does not look dead for longer than that."""
    a, b = two_servers
    origins = {a.runtime.origin, b.runtime.origin}

    async def live() -> set[str]:
        async with a.runtime.reading() as session:
            return await reachability.live_instances(session, origins | {"never-started"})

    assert await live() == origins
    async with pg_admin() as admin:
        for pid in await listener_backends(a.runtime.settings.database_url):
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
    # PostgreSQL frees a session's locks before its connection closes, which is how the
    # listener learns of it.
    deadline = asyncio.get_running_loop().time() + 20
    for world in (a, b):
        listener = world.runtime.fanout
        assert listener is not None
        while not (listener.connections == 2 and listener.connected):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    assert await live() == origins
