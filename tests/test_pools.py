"""The server's database connections: a small pool for writes, another for reads (on SQLite too,
whose file in WAL mode lets readers and its one writer work side by side), and a clear answer
when none comes free in time."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch.config import Settings
from dispatch.db import create_engine, create_read_engine
from dispatch.incidents.models import Incident
from tests.support import World


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One connection for writes, waited for one second: a test can hold it.
    return settings.model_copy(update={"db_pool_size": 1, "db_pool_timeout_s": 1.0})


async def incidents_stored(world: World) -> int:
    async with world.runtime.reading() as session:
        return int(await session.scalar(select(func.count()).select_from(Incident)) or 0)


async def test_requests_that_only_read_answer_while_every_writers_connection_is_taken(
    world: World,
) -> None:
    runtime = world.runtime
    assert runtime.read_engine is not runtime.engine
    operator = await world.operator()
    await world.report(operator)

    async with runtime.transaction() as session:
        await session.execute(text("SELECT 1"))  # the writers' only connection, held
        listed = await world.http.get("/api/v1/incidents", headers=operator.headers)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()) == 1


async def test_a_report_that_waits_too_long_for_a_connection_is_503_and_writes_nothing(
    world: World,
) -> None:
    operator = await world.operator()

    async with world.runtime.transaction() as session:
        await session.execute(text("SELECT 1"))
        body = {"location": {"lon": 114.159, "lat": 22.847}, "category": "fight"}
        refused = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "busy"
    assert refused.json()["retry_after_s"] == 1
    assert await incidents_stored(world) == 0
    # Once the connection is free the same report goes through.
    await world.report(operator)
    assert await incidents_stored(world) == 1


async def test_a_report_of_an_incident_goes_through_while_a_long_read_holds_its_snapshot(
    world: World,
) -> None:
    # What an office's report over a year of incidents does: it reads for seconds from one
    # snapshot of the database. On SQLite it took the one connection and every report of an
    # incident queued behind it, answered 503 once the wait passed the pool's timeout.
    operator = await world.operator()
    async with world.runtime.read_engine.connect() as reader:
        # A reader's transaction holds its first statement's snapshot, on either backend.
        assert await count_incidents(reader) == 0

        await world.report(operator)

        assert await count_incidents(reader) == 0  # still the report's snapshot
        await reader.rollback()
    assert await incidents_stored(world) == 1
    listed = await world.http.get("/api/v1/incidents", headers=operator.headers)
    assert len(listed.json()) == 1  # a request after the commit reads it at once


async def count_incidents(reader: AsyncConnection) -> int:
    return int(await reader.scalar(select(func.count()).select_from(Incident)) or 0)


async def test_work_that_reads_each_statement_alone_sees_each_commit_at_once(
    world: World,
) -> None:
    # A websocket's hello and replays, the fan-out's reads: no transaction around their
    # statements, which would add a round trip (PostgreSQL) or a turn (SQLite) to each.
    operator = await world.operator()
    async with world.runtime.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Incident)) == 0
        await world.report(operator)
        assert await session.scalar(select(func.count()).select_from(Incident)) == 1


async def test_a_sqlite_file_in_wal_mode_gets_readers_of_its_own_that_only_read(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}"
    writer = create_engine(url)
    readers = await create_read_engine(writer, url, 4, 1.0)
    try:
        assert readers is not writer
        async with writer.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            await connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        async with readers.connect() as reader:
            assert await reader.scalar(text("SELECT count(*) FROM t")) == 1
            # A request that only reads stays one: a write from a reader's connection would
            # contend with the writer for the file's lock instead of queuing in the process.
            with pytest.raises(OperationalError, match="readonly"):
                await reader.exec_driver_sql("DELETE FROM t")
    finally:
        await readers.dispose()
        await writer.dispose()


async def test_a_sqlite_database_not_in_wal_mode_keeps_one_connection_for_both(
    tmp_path: Path,
) -> None:
    # A file left in rollback-journal mode, where a reader would lock the writer out.
    url = f"sqlite+aiosqlite:///{tmp_path / 'journal.db'}"
    writer = create_engine(url)
    try:
        async with writer.connect() as connection:
            await connection.exec_driver_sql("PRAGMA journal_mode=DELETE")
        assert await create_read_engine(writer, url, 4, 1.0) is writer
    finally:
        await writer.dispose()
