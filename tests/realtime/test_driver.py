"""Bulk statements sent as the driver's SQL: bound, checked, seen and read as SQLAlchemy does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Integer, String, bindparam, func, literal, select

from alerts.bulk import Added, any_of, write_rows
from alerts.driver import fetch_rows, for_driver
from alerts.models import Message
from alerts.store import MAILBOXES, MESSAGES
from tests.conftest import clock_start
from tests.support import World, statements_sent

# Within the retention window of the servers' clock: the purge its start runs drops older rows.
T0 = (clock_start() or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def note(user_id: str, seq: int, created_at: datetime) -> dict[str, object]:
    return {
        "user_id": user_id,
        "seq": seq,
        "type": "alert",
        "data": {"名称": "治安", "tiers": [1, None]},
        "ref": None,
        "batch": "b" * 32,
        "created_at": created_at,
    }


async def test_a_naive_time_among_the_rows_is_refused_and_nothing_is_written(
    world: World,
) -> None:
    boxes = [{"user_id": "u1", "last_seq": 2, "acked_seq": 0}]
    naive = [note("u1", 1, T0), note("u1", 2, T0.replace(tzinfo=None))]
    with pytest.raises(Exception, match="naive datetimes are refused"):
        async with world.runtime.transaction() as session:
            await write_rows(session, Added(MAILBOXES, boxes), Added(MESSAGES, naive))

    async with world.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


async def test_literals_and_parameters_come_back_as_sqlalchemy_reads_them(world: World) -> None:
    statement = select(
        literal(7, Integer).label("seven"),
        bindparam("name", type_=String).label("name"),
        bindparam("at", type_=Message.__table__.c.created_at.type).label("at"),
    )
    params = {"name": "清溪", "at": T0}
    async with world.runtime.transaction() as session:
        rows = await fetch_rows(session, statement, params)
        through_sqlalchemy = (await session.execute(statement, params)).mappings().all()
    assert rows == [dict(row) for row in through_sqlalchemy]
    assert rows == [{"seven": 7, "name": "清溪", "at": T0}]
    assert rows[0]["at"].tzinfo is not None


async def test_a_missing_parameter_is_refused_by_name(world: World) -> None:
    statement = select(bindparam("wanted", type_=Integer).label("wanted"))
    with pytest.raises(Exception, match="wanted"):
        async with world.runtime.transaction() as session:
            await fetch_rows(session, statement, {})


async def test_the_statement_is_compiled_once_and_seen_by_the_engines_events(
    world: World, backend: str
) -> None:
    statement = select(MESSAGES.c.seq).where(
        any_of(MESSAGES.c.user_id, "users", backend == "postgresql")
    )
    dialect = world.runtime.engine.dialect
    compiled = for_driver(statement, dialect)
    if backend == "postgresql":
        assert compiled is not None and compiled is for_driver(statement, dialect)
        assert "$1" in compiled.sql
    else:
        # SQLite's datetimes come back as text unless SQLAlchemy's types read them.
        assert compiled is None
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            assert await fetch_rows(session, statement, {"users": ["u1", "u2"]}) == []
    assert len([s for s in sent if "FROM messages" in s]) == 1


async def test_a_list_expanded_at_execution_goes_through_sqlalchemy(world: World) -> None:
    statement = select(MESSAGES.c.seq).where(
        MESSAGES.c.user_id.in_(bindparam("users", expanding=True))
    )
    assert for_driver(statement, world.runtime.engine.dialect) is None
    async with world.runtime.transaction() as session:
        await write_rows(session, Added(MESSAGES, [note("u1", 1, T0)]))
    async with world.runtime.transaction() as session:
        assert await fetch_rows(session, statement, {"users": ["u1", "u2"]}) == [{"seq": 1}]
