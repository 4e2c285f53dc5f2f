"""The report's statements are planned for the period asked, however often a connection has
run them before, under settings that last for the report's own transaction (PostgreSQL).

The driver prepares each statement once per connection, and after five runs PostgreSQL may
settle on one generic plan for every parameter value: for a report, a plan priced for a
guessed sliver of the incidents, whose nested loops over a million incidents took three times
as long as the period's own plan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch import db
from dispatch.reports import service
from dispatch.reports.schemas import GroupBy

TARGETS = (60.0, 180.0, 300.0)
RUNS = 8
NOW = datetime.now(UTC)
LAST_30_DAYS = service.Filters(NOW - timedelta(days=30), NOW)


@pytest.fixture
async def engine(postgres_only: str) -> AsyncIterator[AsyncEngine]:
    """The server's engine with one connection, which every session here gets in turn."""
    engine = db.create_engine(postgres_only, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return db.create_sessionmaker(engine)


async def report(session: AsyncSession) -> None:
    await service.response_times(
        session, LAST_30_DAYS, [GroupBy.TIER], now=NOW, targets=TARGETS, max_exclusions=10
    )


async def prepared_plans(engine: AsyncEngine, marker: str) -> list[tuple[int, int]]:
    """(generic, custom) plans of the connection's prepared statements that contain marker."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE :pattern AND statement NOT LIKE '%pg_prepared_statements%'"
            ),
            {"pattern": f"%{marker}%"},
        )
        return [(int(generic), int(custom)) for generic, custom in rows.all()]


async def settings(session: AsyncSession) -> dict[str, str | None]:
    return {name: await session.scalar(text(f"SHOW {name}")) for name in service.TUNING}


async def test_a_connection_that_ran_the_report_often_still_plans_it_for_the_period(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for _ in range(RUNS):
        async with sessions() as session:
            await report(session)
    assert await prepared_plans(engine, "percentile_disc") == [(0, RUNS)]
    assert await prepared_plans(engine, "ORDER BY m.reported_at") == [(0, RUNS)]


async def test_a_connection_that_drew_the_histogram_often_still_plans_it_for_the_period(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tier_1 = service.Filters(LAST_30_DAYS.start, LAST_30_DAYS.end, 1)
    for _ in range(RUNS):
        async with sessions() as session:
            await service.arrival_histogram(session, tier_1, 10, NOW)
    assert await prepared_plans(engine, "count(m.arrival)") == [(0, RUNS)]


async def test_the_reports_settings_hold_for_its_own_transaction_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await report(session)
        during = await settings(session)
    async with sessions() as session:
        after = await settings(session)
    assert during == service.TUNING
    assert all(after[name] != value for name, value in service.TUNING.items()), after
