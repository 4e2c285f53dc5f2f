"""The server's database connections: a small pool for writes, another for reads, and a clear
answer when none comes free in time."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from dispatch.config import Settings
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
    world: World, backend: str
) -> None:
    runtime = world.runtime
    if backend == "sqlite":
        # One file with one writer: the one connection serves both.
        assert runtime.read_engine is runtime.engine
        return
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
