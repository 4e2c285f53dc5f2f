"""The report's statements are planned for the period asked, however often a connection has
run them before, under settings that last for the report's own transaction (PostgreSQL).

The driver prepares each statement once per connection, and after five runs PostgreSQL may
settle on one generic plan for every parameter value: for a report, a plan priced for a
guessed sliver of the incidents, whose nested loops over a million incidents took three times
as long as the period's own plan.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch import db
from dispatch.reports import service
from dispatch.reports.schemas import GroupBy

TARGETS = (60.0, 180.0, 300.0)
RUNS = 8


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


async def test_a_connection_that_ran_the_report_often_still_plans_it_for_the_period(
    postgres_only: str,
) -> None:
    engine = db.create_engine(postgres_only, pool_size=1, max_overflow=0)
    sessions = db.create_sessionmaker(engine)
    now = datetime.now(UTC)
    filters = service.Filters(now - timedelta(days=30), now)
    try:
        for _ in range(RUNS):
            async with sessions() as session:
                await service.response_times(
                    session, filters, [GroupBy.TIER], now=now, targets=TARGETS, max_exclusions=10
                )
        figures = await prepared_plans(engine, "percentile_disc")
        listed = await prepared_plans(engine, "ORDER BY m.reported_at")
    finally:
        await engine.dispose()
    assert figures == [(0, RUNS)]
    assert listed == [(0, RUNS)]


async def test_a_connection_that_drew_the_histogram_often_still_plans_it_for_the_period(
    postgres_only: str,
) -> None:
    engine = db.create_engine(postgres_only, pool_size=1, max_overflow=0)
    sessions = db.create_sessionmaker(engine)
    now = datetime.now(UTC)
    filters = service.Filters(now - timedelta(days=30), now, 1)
    try:
        for _ in range(RUNS):
            async with sessions() as session:
                await service.arrival_histogram(session, filters, 10, now)
        plans = await prepared_plans(engine, "count(m.arrival)")
    finally:
        await engine.dispose()
    assert plans == [(0, RUNS)]


async def test_the_reports_settings_hold_for_its_own_transaction_only(postgres_only: str) -> None:
    engine = db.create_engine(postgres_only, pool_size=1, max_overflow=0)
    sessions = db.create_sessionmaker(engine)
    now = datetime.now(UTC)
    filters = service.Filters(now - timedelta(days=30), now)
    try:
        async with sessions() as session:
            await service.response_times(
                session, filters, [GroupBy.TIER], now=now, targets=TARGETS, max_exclusions=10
            )
            during = {name: await session.scalar(text(f"SHOW {name}")) for name in service.TUNING}
        async with sessions() as session:
            after = {name: await session.scalar(text(f"SHOW {name}")) for name in service.TUNING}
    finally:
        await engine.dispose()
    assert during == service.TUNING
    assert all(after[name] != value for name, value in service.TUNING.items()), after
