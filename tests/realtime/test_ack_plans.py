"""A flush of acknowledgements costs what its own users hold, not what the town holds
(PostgreSQL's plans, as a pooled connection keeps them after five runs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from alerts.acks import Ack, acknowledged_refs
from dispatch import db
from tests.support import statements_sent


def town(leaders: int, messages_each: int) -> tuple[str, ...]:
    """``leaders``, each with ``messages_each`` messages, the last two not acknowledged."""
    return (
        "INSERT INTO mailboxes (user_id, last_seq, acked_seq) "
        f"SELECT 'u' || i, {messages_each}, {messages_each} - 2 "
        f"FROM generate_series(1, {leaders}) AS i",
        "INSERT INTO messages (user_id, seq, type, data, ref, batch, created_at) "
        "SELECT 'u' || i, s, 'alert', '{}', 'r' || i || '-' || s, 'b' || s, now() "
        f"FROM generate_series(1, {leaders}) AS i, generate_series(1, {messages_each}) AS s",
        "ANALYZE mailboxes, messages",
    )


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def generic_plan(connection: AsyncConnection, sql: str, users: list[str]) -> dict[str, Any]:
    """The plan PostgreSQL keeps for every value once a connection has run the statement
    five times: priced without the values."""
    await connection.exec_driver_sql(f"PREPARE flush_read AS {sql}")
    await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    array = "'{" + ",".join(users) + "}'"
    arguments = ", ".join(array for _ in set(re.findall(r"\$\d+", sql)))
    rows = await connection.exec_driver_sql(
        f"EXPLAIN (FORMAT JSON) EXECUTE flush_read({arguments})"
    )
    (document,) = rows.one()
    plan: dict[str, Any] = (json.loads(document) if isinstance(document, str) else document)[0]
    return plan["Plan"]


@pytest.mark.parametrize(("leaders", "messages_each"), [(1000, 8), (10_000, 30)])
async def test_a_flush_looks_up_its_users_mailboxes_and_messages_by_key_whatever_the_town(
    postgres_only: str, leaders: int, messages_each: int
) -> None:
    engine = db.create_engine(postgres_only, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            for statement in town(leaders, messages_each):
                await connection.exec_driver_sql(statement)
            await connection.commit()
        users = [f"u{n}" for n in range(1, 13)]
        at = datetime.now(UTC)
        batch = {user: [Ack(seq=messages_each, at=at)] for user in users}
        with statements_sent(engine.sync_engine) as sent:
            async with db.create_sessionmaker(engine)() as session:
                acked, skipped = await acknowledged_refs(session, batch)
        # The two messages past each mark, and nothing else.
        assert sorted((a.user_id, a.ref) for a in acked) == sorted(
            (user, f"r{user[1:]}-{seq}")
            for user in users
            for seq in (messages_each - 1, messages_each)
        )
        assert skipped == []
        (read,) = sent
        async with engine.connect() as connection:
            plan = await generic_plan(connection, read, users)
            await connection.rollback()
    finally:
        await engine.dispose()
    every = list(nodes(plan))
    reads = [
        (node["Relation Name"], node["Node Type"]) for node in every if "Relation Name" in node
    ]
    assert {table for table, _ in reads} == {"mailboxes", "messages"}
    # Neither table read whole, nor every message of the batch's users. Before, both were
    # read: every message the users held, by the list, and in the smaller town every mailbox,
    # hashed at each flush.
    assert [table for table, how in reads if how == "Seq Scan"] == []
    messages_read_by = [
        node["Index Cond"] for node in every if node.get("Index Name") == "pk_messages"
    ]
    assert messages_read_by != []
    assert all("seq > mailboxes.acked_seq" in condition for condition in messages_read_by)
