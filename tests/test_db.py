"""The storage plumbing: the engine's pool across a database restart."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text

from alerts.store import _lock_query
from dispatch.db import create_engine
from tests.conftest import PG_ADMIN_DSN


async def test_a_pooled_connection_the_database_ended_is_replaced_before_it_is_handed_out(
    postgres_only: str,
) -> None:
    # What a restart of PostgreSQL leaves in the pool: a connection whose session is gone.
    # Handed out as it is, the first statement of the next request would fail.
    engine = create_engine(postgres_only)
    try:
        async with engine.connect() as connection:
            first = await connection.scalar(text("SELECT pg_backend_pid()"))
        assert await end_sessions(postgres_only) == [first]

        async with engine.connect() as connection:
            second = await connection.scalar(text("SELECT pg_backend_pid()"))
        assert second is not None and second != first
    finally:
        await engine.dispose()


async def end_sessions(database_url: str) -> list[int]:
    """Ends every session on the database (waiting until each is gone), as a restart does."""
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        # In the select list, not the WHERE clause: only for the rows the filter keeps.
        rows = await admin.fetch(
            "SELECT pid, pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database_url.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()
    return [row["pid"] for row in rows if row["ended"]]


async def test_a_small_towns_mailboxes_are_locked_by_index_not_read_whole(
    postgres_only: str,
) -> None:
    # A thousand mailboxes fit in a few pages: with the default cost of a random read (meant
    # for disks) the planner read them all, twice a report, to lock a dozen.
    engine = create_engine(postgres_only)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO mailboxes (user_id, last_seq, acked_seq)"
                    " SELECT 'user-' || n, 0, 0 FROM generate_series(1, 1000) AS n"
                )
            )
            await connection.execute(text("ANALYZE mailboxes"))
            locking = _lock_query(postgresql=True).compile(dialect=engine.dialect)
            dozen = [f"user-{n}" for n in range(1, 13)]
            explained = await connection.exec_driver_sql(f"EXPLAIN {locking}", (dozen,))
            plan = "\n".join(row[0] for row in explained)
            assert "Index Scan using pk_mailboxes" in plan
            assert "Seq Scan" not in plan
    finally:
        await engine.dispose()
