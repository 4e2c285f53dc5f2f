"""Many new rows in one call: what goes in comes back, whatever the count, or nothing does."""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    ARRAY,
    CTE,
    Boolean,
    ColumnElement,
    Float,
    FromClause,
    Insert,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.bulk import (
    Added,
    Changed,
    Guarded,
    Lead,
    Precondition,
    Read,
    after,
    any_of,
    recordset,
    recordset_values,
    write_later,
    write_rows,
)
from alerts.driver import fetch_rows
from alerts.fanout import asyncpg_dsn
from alerts.models import Mailbox, Message
from alerts.store import MAILBOXES, MESSAGES
from dispatch.db import create_engine, create_sessionmaker
from tests.conftest import clock_start
from tests.support import World, statements_sent

# Within the retention window of the servers' clock: the purge its start runs drops older rows.
T0 = (clock_start() or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def message(user_id: str, seq: int, ref: str | None) -> dict[str, object]:
    return {
        "user_id": user_id,
        "seq": seq,
        "type": "alert" if ref else "incident.updated",
        "data": {"incident": {"id": f"i{seq}", "名称": "治安"}, "tiers": [1, 3, None]},
        "ref": ref,
        "batch": "b" * 32,
        "created_at": T0 + timedelta(seconds=seq),
    }


@pytest.mark.parametrize("count", [1, 3, 40])
async def test_rows_of_several_tables_come_back_as_they_went_in(world: World, count: int) -> None:
    boxes = [{"user_id": f"u{n}", "last_seq": n, "acked_seq": 0} for n in range(count)]
    notes = [message(f"u{n}", n + 1, f"d{n}" if n % 2 else None) for n in range(count)]
    async with world.runtime.transaction() as session:
        await write_rows(
            session, Added(MAILBOXES, boxes), Added(MESSAGES, notes), Added(MESSAGES, [])
        )

    async with world.runtime.sessionmaker() as session:
        stored = (await session.scalars(select(Message).order_by(Message.seq))).all()
        assert await session.scalar(select(func.count()).select_from(Mailbox)) == count
    assert [(m.user_id, m.seq, m.type, m.data, m.ref, m.created_at) for m in stored] == [
        (n["user_id"], n["seq"], n["type"], n["data"], n["ref"], n["created_at"]) for n in notes
    ]
    assert all(m.created_at.tzinfo is UTC for m in stored)


async def test_rows_are_stored_as_sqlalchemys_own_insert_stores_them(world: World) -> None:
    # On PostgreSQL the rows ride one JSON document (json_to_recordset): a time in another
    # zone, to the microsecond, JSON's null, escapes and numbers must land as SQLAlchemy's
    # insert of the same values lands them.
    east8 = timezone(timedelta(hours=8))
    odd = [
        {
            **message("a", 1, None),
            "data": None,
            "created_at": datetime(2026, 11, 29, 16, 30, 0, 1, tzinfo=east8),
        },
        {
            **message("a", 2, 'd"\\2'),
            "data": {"说明": '引号"、反斜杠\\、换行\n', "n": [1.5e-7, 2**62, -0.5, True, None]},
        },
    ]
    box = {"user_id": "a", "last_seq": 2, "acked_seq": 0}
    async with world.runtime.transaction() as session:
        await write_rows(session, Added(MAILBOXES, [box]), Added(MESSAGES, odd))
    async with world.runtime.transaction() as session:
        await session.execute(insert(MESSAGES), [{**row, "user_id": "b"} for row in odd])

    m = MESSAGES.c
    stored = select(m.seq, m.type, cast(m.data, Text), m.data.is_(None), m.ref, m.created_at)
    async with world.runtime.sessionmaker() as session:
        ours = (await session.execute(stored.where(m.user_id == "a").order_by(m.seq))).all()
        theirs = (await session.execute(stored.where(m.user_id == "b").order_by(m.seq))).all()
    assert ours == theirs
    json_text, sql_null = ours[0][2], ours[0][3]
    assert (json_text, sql_null) == ("null", False)
    times = [row[5] for row in ours]
    assert times == [odd[0]["created_at"], T0 + timedelta(seconds=2)]
    assert [(t.tzinfo, t.microsecond) for t in times] == [(UTC, 1), (UTC, 0)]


async def test_a_number_that_is_not_finite_is_refused_not_stored_as_null(
    postgres_only: str,
) -> None:
    # JSON has no NaN: orjson would write null, and the row would hold NULL where it was given
    # a number.
    columns = {"x": Float()}
    rows = recordset("checked", columns)
    statement = select(*recordset_values(rows)).select_from(rows)
    engine = create_engine(postgres_only)
    try:
        async with create_sessionmaker(engine)() as session:
            given = [{"x": 1.25}, {"x": None}, {"x": 2e-300}]
            assert await fetch_rows(session, statement, {"checked": given}) == given
            for bad in (math.nan, math.inf, -math.inf):
                with pytest.raises(ValueError, match="numbers must be finite"):
                    await fetch_rows(session, statement, {"checked": [{"x": bad}]})
    finally:
        await engine.dispose()


async def test_one_bad_row_leaves_no_row_of_any_table(world: World) -> None:
    boxes = [{"user_id": "u1", "last_seq": 0, "acked_seq": 0}]
    twice = [message("u1", 1, None), message("u1", 1, "d1")]
    with pytest.raises(IntegrityError):
        async with world.runtime.transaction() as session:
            await write_rows(session, Added(MAILBOXES, boxes), Added(MESSAGES, twice))

    async with world.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Mailbox)) == 0
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


@pytest.mark.parametrize("count", [1, 5])
async def test_changed_rows_are_found_by_their_key_and_only_they_change(
    world: World, count: int
) -> None:
    boxes = [{"user_id": f"u{n}", "last_seq": 0, "acked_seq": 0} for n in range(count + 2)]
    async with world.runtime.transaction() as session:
        await write_rows(session, Added(MAILBOXES, boxes))
    moved = [{"user_id": f"u{n}", "last_seq": 10 + n} for n in range(count)]
    notes = [message(f"u{n}", 10 + n, None) for n in range(count)]
    async with world.runtime.transaction() as session:
        await write_rows(session, Changed(MAILBOXES, "user_id", moved), Added(MESSAGES, notes))

    async with world.runtime.sessionmaker() as session:
        rows = await session.execute(
            select(Mailbox.user_id, Mailbox.last_seq, Mailbox.acked_seq).order_by(Mailbox.user_id)
        )
        assert rows.all() == [(f"u{n}", 10 + n if n < count else 0, 0) for n in range(count + 2)]
        assert await session.scalar(select(func.count()).select_from(Message)) == count


async def test_rows_kept_for_the_last_statement_go_with_it_or_refuse_the_commit(
    world: World,
) -> None:
    async with world.runtime.transaction() as session:
        write_later(session, Added(MAILBOXES, [{"user_id": "u1", "last_seq": 0, "acked_seq": 0}]))
    async with world.runtime.sessionmaker() as session:
        assert (await session.get(Mailbox, "u1")) is not None

        write_later(session, Changed(MAILBOXES, "user_id", [{"user_id": "u1", "last_seq": 9}]))
        with pytest.raises(RuntimeError, match="never written"):
            await session.commit()
        await session.rollback()
        box = await session.get(Mailbox, "u1", populate_existing=True)
        assert box is not None and box.last_seq == 0


async def test_postgresql_compresses_stored_messages_with_lz4(postgres_only: str) -> None:
    # An alert stores the whole incident (~7 KB of JSON) once per recipient; lz4 compresses
    # it for a fraction of pglz's CPU.
    connection = await asyncpg.connect(asyncpg_dsn(postgres_only))
    try:
        method = await connection.fetchval(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'messages'::regclass AND attname = 'data'"
        )
        await connection.execute(
            "INSERT INTO messages (user_id, seq, type, data, batch, created_at) "
            "VALUES ('u1', 1, 'alert', $1::jsonb, 'b', now())",
            json.dumps({"incident": {"dispatches": [{"team": f"队{n}"} for n in range(400)]}}),
        )
        stored = await connection.fetchval("SELECT pg_column_compression(data) FROM messages")
    finally:
        await connection.close()
    assert (method, stored) == (b"l", "lz4")


async def test_any_of_finds_the_same_rows_with_one_statement_text_for_every_count(
    world: World, backend: str
) -> None:
    boxes = [{"user_id": f"u{n}", "last_seq": n, "acked_seq": 0} for n in range(12)]
    async with world.runtime.transaction() as session:
        await write_rows(session, Added(MAILBOXES, boxes))
    query = (
        select(MAILBOXES.c.user_id)
        .where(any_of(MAILBOXES.c.user_id, "wanted", backend == "postgresql"))
        .order_by(MAILBOXES.c.user_id)
    )
    found: list[list[str]] = []
    with statements_sent(world.runtime) as sent:
        async with world.runtime.sessionmaker() as session:
            for wanted in (["u3"], ["u1", "u7", "u11"], [f"u{n}" for n in range(0, 12, 2)], []):
                found.append(list(await session.scalars(query, {"wanted": wanted})))
    assert found == [["u3"], ["u1", "u11", "u7"], ["u0", "u10", "u2", "u4", "u6", "u8"], []]
    texts = {s for s in sent if "FROM mailboxes" in s}
    if backend == "postgresql":
        assert len(texts) == 1 and "ANY" in texts.pop()


async def test_a_read_rides_the_writes_and_its_rows_come_back(world: World, backend: str) -> None:
    async with world.runtime.transaction() as session:
        await write_rows(
            session, Added(MAILBOXES, [{"user_id": "u1", "last_seq": 4, "acked_seq": 2}])
        )
    last_seqs = select(MAILBOXES.c.user_id, MAILBOXES.c.last_seq).where(
        MAILBOXES.c.user_id.in_(bindparam("users", expanding=True))
    )
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            rows = await write_rows(
                session,
                Added(MESSAGES, [message("u1", 5, "d5")]),
                read=Read(last_seqs, {"users": ["u1", "u9"]}),
            )

    assert [dict(row) for row in rows] == [{"user_id": "u1", "last_seq": 4}]
    writes_and_reads = [s for s in sent if "messages" in s or "FROM mailboxes" in s]
    assert len(writes_and_reads) == (1 if backend == "postgresql" else 2)
    async with world.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1


@functools.cache
def fewer_mailboxes_than() -> ColumnElement[bool]:
    # Built once, as a precondition must be: it keys the compiled statement.
    count = select(func.count()).select_from(MAILBOXES).scalar_subquery()
    return count < bindparam("most", type_=Integer())


@pytest.mark.parametrize("holds", [True, False])
async def test_steps_held_by_a_precondition_write_only_where_it_holds_and_the_read_answers(
    world: World, backend: str, holds: bool
) -> None:
    async with world.runtime.transaction() as session:
        await write_rows(
            session, Added(MAILBOXES, [{"user_id": "u1", "last_seq": 4, "acked_seq": 2}])
        )
    boxes = [{"user_id": "u2", "last_seq": 0, "acked_seq": 0}]
    moved = [{"user_id": "u1", "last_seq": 5}]
    only_if = Precondition(fewer_mailboxes_than(), {"most": 2 if holds else 1})
    counted = select(func.count().label("boxes")).select_from(MAILBOXES)
    steps = (
        Added(MAILBOXES, boxes),
        Changed(MAILBOXES, "user_id", moved),
        Added(MESSAGES, [message("u1", 5, "d5")]),
    )
    if backend != "postgresql":
        # Elsewhere the steps go one statement each: nothing could hold them all at once.
        async with world.runtime.transaction() as session:
            with pytest.raises(ValueError, match="one statement"):
                await write_rows(session, *steps, read=Read(counted, {}), only_if=only_if)
        return
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            rows = await write_rows(session, *steps, read=Read(counted, {}), only_if=only_if)

    # The read sees the table as the statement found it, which is what the condition judged.
    assert [dict(row) for row in rows] == [{"boxes": 1}]
    # One round trip: the condition rides the writes' statement.
    (written,) = [s for s in sent if "INSERT INTO messages" in s]
    assert "FROM mailboxes" in written
    async with world.runtime.sessionmaker() as session:
        stored = await session.execute(
            select(Mailbox.user_id, Mailbox.last_seq).order_by(Mailbox.user_id)
        )
        assert stored.all() == ([("u1", 5), ("u2", 0)] if holds else [("u1", 4)])
        assert await session.scalar(select(func.count()).select_from(Message)) == int(holds)


@functools.cache
def mailbox_once() -> tuple[CTE, ColumnElement[bool], Select[Any]]:
    """A write of the caller's own, riding ahead of the steps: ``once_user``'s mailbox unless it
    exists; the steps written only where it was, and a read that says whether it was."""
    once = (
        postgresql.insert(MAILBOXES)
        .from_select(
            ["user_id", "last_seq", "acked_seq"],
            select(bindparam("once_user", type_=String()), literal(0), literal(0)),
        )
        .on_conflict_do_nothing(index_elements=["user_id"])
        .returning(MAILBOXES.c.user_id)
        .cte("once")
    )
    wrote = select(func.count()).select_from(once).scalar_subquery()
    return once, wrote > 0, select(wrote.label("wrote"))


@pytest.mark.parametrize("present", [False, True])
async def test_a_preconditions_own_write_rides_ahead_and_the_steps_follow_it(
    world: World, backend: str, present: bool
) -> None:
    once, holds, read = mailbox_once()
    only_if = Precondition(holds, {"once_user": "u9"}, (once,))
    if backend != "postgresql":
        # Elsewhere the steps go one statement each: nothing could hold them all at once.
        async with world.runtime.transaction() as session:
            with pytest.raises(ValueError, match="one statement"):
                await write_rows(session, Added(MESSAGES, []), read=Read(read, {}), only_if=only_if)
        return
    if present:
        async with world.runtime.transaction() as session:
            await write_rows(
                session, Added(MAILBOXES, [{"user_id": "u9", "last_seq": 3, "acked_seq": 0}])
            )
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            rows = await write_rows(
                session,
                Added(MESSAGES, [message("u9", 1, "d1")]),
                read=Read(read, {}),
                only_if=only_if,
            )

    assert [dict(row) for row in rows] == [{"wrote": int(not present)}]
    # One round trip: the mailbox's insert rides ahead of the messages' in their statement.
    (written,) = [s for s in sent if "INSERT INTO messages" in s]
    assert "INSERT INTO mailboxes" in written
    async with world.runtime.sessionmaker() as session:
        box = await session.get(Mailbox, "u9")
        assert box is not None and box.last_seq == (3 if present else 0)
        assert await session.scalar(select(func.count()).select_from(Message)) == int(not present)


@functools.cache
def guarded_mailbox(lead: FromClause | None) -> Insert:
    """A guarded write for the tests: a mailbox for ``guarded_user``, only when
    ``guarded_allowed``, and not before the statement's lead is written."""
    proposed = select(bindparam("guarded_user", type_=String()), literal(0), literal(0)).where(
        bindparam("guarded_allowed", type_=Boolean())
    )
    if (written := after(lead)) is not None:
        proposed = proposed.where(written)
    return (
        insert(MAILBOXES)
        .from_select(["user_id", "last_seq", "acked_seq"], proposed)
        .returning(MAILBOXES.c.user_id)
    )


class Refused(Exception):
    pass


async def refuse() -> None:
    raise Refused


async def test_a_guarded_write_its_condition_refuses_takes_back_the_rows_written_with_it(
    world: World, backend: str
) -> None:
    box = {"user_id": "u1", "last_seq": 0, "acked_seq": 0}
    announced = select(func.upper(bindparam("word", type_=String())))
    with pytest.raises(Refused), statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            await write_rows(
                session,
                Added(MAILBOXES, [box]),
                Guarded(guarded_mailbox, {"guarded_user": "u2", "guarded_allowed": False}, refuse),
                read=Read(announced, {"word": "ok"}),
            )
    if backend == "postgresql":
        # The rows, the guarded write and the read: one statement. (Picked by the read's
        # upper(): the server's own tasks may write other mailboxes meanwhile.)
        (statement,) = [s for s in sent if "upper(" in s]
        assert statement.count("INSERT INTO mailboxes") == 2, statement
    async with world.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Mailbox)) == 0

    async with world.runtime.transaction() as session:
        rows = await write_rows(
            session,
            Added(MAILBOXES, [box]),
            Guarded(guarded_mailbox, {"guarded_user": "u2", "guarded_allowed": True}, refuse),
            read=Read(announced, {"word": "ok"}),
        )
    # With a guarded write the read is made, and its rows are not handed back.
    assert rows == []
    async with world.runtime.sessionmaker() as session:
        users = await session.scalars(select(Mailbox.user_id).order_by(Mailbox.user_id))
        assert list(users) == ["u1", "u2"]


@functools.cache
def numbered_lead() -> tuple[CTE, CTE]:
    """A lead for the tests: mailboxes made with a last seq, and one message for each numbered
    from what the first write returns."""
    users = bindparam("lead_users", type_=ARRAY(String()))
    made = (
        insert(MAILBOXES)
        .from_select(
            ["user_id", "last_seq", "acked_seq"],
            select(func.unnest(users), bindparam("lead_last", type_=Integer()), literal(0)),
        )
        .returning(MAILBOXES.c.user_id, MAILBOXES.c.last_seq)
        .cte("made")
    )
    numbered = insert(MESSAGES).from_select(
        ["user_id", "seq", "type", "data", "ref", "batch", "created_at"],
        select(
            made.c.user_id,
            made.c.last_seq,
            literal("note"),
            func.jsonb_build_object(),
            literal(None, String()),
            literal("b" * 32),
            bindparam("lead_at", type_=MESSAGES.c.created_at.type),
        ),
    )
    return made, numbered.cte("numbered")


async def test_a_lead_comes_first_its_rows_come_back_and_a_guard_waits_for_it(
    postgres_only: str,
) -> None:
    engine = create_engine(postgres_only)
    params = {"lead_users": ["u1", "u2"], "lead_last": 7, "lead_at": T0}
    refused = {"guarded_user": "u3", "guarded_allowed": False}
    try:
        sessions = create_sessionmaker(engine)
        with pytest.raises(Refused):
            async with sessions() as session, session.begin():
                await write_rows(
                    session,
                    Guarded(guarded_mailbox, refused, refuse),
                    lead=Lead(numbered_lead(), params),
                )
        async with sessions() as session, session.begin():
            allowed = {"guarded_user": "u3", "guarded_allowed": True}
            rows = await write_rows(
                session,
                Guarded(guarded_mailbox, allowed, refuse),
                lead=Lead(numbered_lead(), params),
            )
            stored = await session.execute(select(Message.user_id, Message.seq))
            boxes = await session.scalars(
                select(Mailbox.user_id).where(Mailbox.user_id.like("u%")).order_by(Mailbox.user_id)
            )
            assert sorted((user, seq) for user, seq in stored) == [("u1", 7), ("u2", 7)]
            assert list(boxes) == ["u1", "u2", "u3"]
        # The lead's rows, each with the guard's count; nothing of the refused try was kept.
        assert sorted((r["user_id"], r["last_seq"], r["guard_0"]) for r in rows) == [
            ("u1", 7, 1),
            ("u2", 7, 1),
        ]
        # The guard's row is proposed only once the lead has written all of its rows.
        plan = await _plan(engine, numbered_lead(), params | allowed)
        assert "One-Time Filter" in plan
    finally:
        await engine.dispose()


async def _plan(engine: AsyncEngine, lead: tuple[CTE, CTE], params: dict[str, object]) -> str:
    made = lead[0]
    guard = guarded_mailbox(made).cte("guard")
    count = select(func.count()).select_from(guard).scalar_subquery()
    query = select(made.c.user_id, count).add_cte(*lead, guard).params(params)
    sql = query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in rows)
        await connection.rollback()
    return plan
