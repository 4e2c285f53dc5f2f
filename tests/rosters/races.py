"""Races between requests, fired at a real server, and reproduced step by step on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from tests.support import World

Send = Callable[[int], Awaitable[httpx.Response]]


async def at_once(send: Send, times: int = 8) -> list[httpx.Response]:
    """``send(i)`` for i in 0..times-1, all in flight together (a double-clicked form, a
    retrying client): the server takes them concurrently, on PostgreSQL over several
    connections."""
    return list(await asyncio.gather(*(send(i) for i in range(times))))


def statuses(replies: Sequence[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in replies)


def postgres_dsn(world: World) -> str:
    url = world.runtime.settings.database_url
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL runs transactions side by side; SQLite queues them")
    return url.replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def uncommitted(world: World, sql: str, *args: Any) -> AsyncIterator[asyncpg.Connection]:
    """A second writer: ``sql`` run in a transaction that stays open for the block and commits
    at its end. A request made meanwhile that reads does not see the row; one that writes the
    same key waits for the commit, and then meets a row that exists."""
    connection = await asyncpg.connect(postgres_dsn(world))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(sql, *args)
        yield connection
        await transaction.commit()
    finally:
        await connection.close()


async def when_blocked_or_done(world: World, request: asyncio.Task[httpx.Response]) -> None:
    """Wait until ``request`` waits for a lock in the database (or has been answered)."""
    watcher = await asyncpg.connect(postgres_dsn(world))
    try:
        for _ in range(500):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting or request.done():
                return
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()
    raise AssertionError("the request neither waited for the other writer nor was answered")


async def racing_a_writer(
    world: World, send: Callable[[], Awaitable[httpx.Response]], sql: str, *args: Any
) -> httpx.Response:
    """The request, sent while another transaction has written ``sql`` and not committed yet;
    that transaction commits once the request waits for it (or was answered without)."""
    async with uncommitted(world, sql, *args):
        request = asyncio.create_task(send())
        await when_blocked_or_done(world, request)
    return await request


async def while_writing(
    world: World,
    marker: str,
    request: Callable[[], Awaitable[httpx.Response]],
    meanwhile: Callable[[], Awaitable[httpx.Response]],
) -> tuple[httpx.Response, httpx.Response]:
    """``request``, and ``meanwhile`` sent as soon as the request's first statement holding
    ``marker`` has run: the request waits half a second there, its transaction open, so that
    ``meanwhile`` reads what the request has not committed yet, unless it waits for it."""
    started: list[asyncio.Task[httpx.Response]] = []

    async def start(_: Any) -> None:
        started.append(asyncio.ensure_future(meanwhile()))
        await asyncio.sleep(0.5)

    def after(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not started and marker in statement:
            connection.connection.dbapi_connection.run_async(start)

    engine = world.runtime.engine.sync_engine
    event.listen(engine, "after_cursor_execute", after)
    try:
        first = await request()
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert started, f"no statement held {marker!r}"
    return first, await started[0]
