"""The storage plumbing: the engine's pool across a database restart, PostgreSQL reached through
its socket, and new ids."""

from __future__ import annotations

import functools
import operator
import os
import uuid
from datetime import UTC, date, datetime
from enum import IntEnum, StrEnum
from pathlib import Path

import aiosqlite
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from alerts import store as mailboxes
from alerts.bulk import Added, Changed, write_rows
from alerts.fanout import APPLICATION_NAME
from alerts.store import MAILBOXES, MESSAGES
from dispatch.db import (
    CHECK_IDLE_S,
    CHECKED_IN_KEY,
    WAL_SIZE_LIMIT,
    create_engine,
    create_sessionmaker,
    hold_snapshot,
    json_text,
    new_id,
)
from tests.conftest import pg_admin, server_settings, two_servers_on


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


async def test_a_connection_back_from_work_is_handed_out_without_a_query_an_idle_one_with_one(
    postgres_only: str,
) -> None:
    # Under load the check must not cost a round trip a transaction: a connection that was
    # just used is known alive unless its socket closed. One idle for long may have been cut
    # without a word, and is asked.
    engine = create_engine(postgres_only)
    sent: list[str] = []
    try:
        async with engine.connect() as connection:
            pooled = await connection.get_raw_connection()
            assert pooled.driver_connection is not None
            pooled.driver_connection.add_query_logger(lambda query: sent.append(query.query))
            entry = pooled.info  # the pool entry's, kept across checkouts
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 2")) == 2
        # (Statements SQLAlchemy prepares are not logged; the check's simple query is.)
        assert "SELECT 1" not in sent

        entry[CHECKED_IN_KEY] -= CHECK_IDLE_S + 1
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 3")) == 3
        assert sent.count("SELECT 1") == 1
    finally:
        await engine.dispose()


async def end_sessions(database_url: str) -> list[int]:
    """Ends every session on the database (waiting until each is gone), as a restart does."""
    async with pg_admin() as admin:
        # In the select list, not the WHERE clause: only for the rows the filter keeps.
        rows = await admin.fetch(
            "SELECT pid, pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            make_url(database_url).database,
        )
    return [row["pid"] for row in rows if row["ended"]]


async def test_a_small_towns_mailboxes_are_locked_and_written_by_index_not_read_whole(
    postgres_only: str,
) -> None:
    # A thousand mailboxes fit in a few pages: with the default cost of a random read (meant
    # for disks) the planner read them all to lock a dozen. Neither the lock nor the last
    # write's keyed update may read them whole.
    engine = create_engine(postgres_only)
    dozen = [f"user-{n}" for n in range(1, 13)]
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO mailboxes (user_id, last_seq, acked_seq)"
                    " SELECT 'user-' || n, 0, 0 FROM generate_series(1, 1000) AS n"
                )
            )
            await connection.execute(text("ANALYZE mailboxes"))
        async with create_sessionmaker(engine)() as session:
            await mailboxes.lock(session, dozen)
            await write_rows(
                session,
                Changed(MAILBOXES, "user_id", [{"user_id": u, "last_seq": 1} for u in dozen]),
                Added(
                    MESSAGES,
                    [
                        {
                            "user_id": u,
                            "seq": 1,
                            "type": "alert",
                            "data": {},
                            "ref": None,
                            "batch": "b",
                            "created_at": now,
                        }
                        for u in dozen
                    ],
                ),
            )
            # This transaction's own counts, up to date at once.
            scans = await session.execute(
                text(
                    "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                    " WHERE relname = 'mailboxes'"
                )
            )
            seq_scans, index_scans = scans.one()
            assert seq_scans == 0
            assert index_scans >= 2
            await session.commit()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("with_address", [False, True], ids=["socket", "address-and-socket"])
async def test_postgresql_named_by_its_socket_serves_every_connection_of_two_processes(
    postgres_only: str, with_address: bool
) -> None:
    # On the server's own machine PostgreSQL can be reached through its socket, with no TCP
    # port open (docs/deploy.md). Every connection must go there: the pools' and each
    # process's fan-out listener, which carries the alert across. A URL with an address as
    # well once sent the pools to the socket (as SQLAlchemy reads it) and the listener over
    # TCP (as asyncpg reads it).
    tcp = make_url(postgres_only)
    name = tcp.database
    socket = {"host": await socket_dir()}
    url = (
        tcp.set(query=socket)
        if with_address
        else URL.create(tcp.drivername, tcp.username, tcp.password, database=name, query=socket)
    )
    settings = server_settings(url.render_as_string(hide_password=False))
    async with two_servers_on(settings) as (a, b):
        team = await a.team()
        leader = await a.leader(team)
        operator = await a.operator()
        phone = await b.connect(leader)
        incident = await a.report(operator)
        alert = await phone.next_of("alert", timeout=15)
        assert alert["data"]["incident"]["id"] == incident["id"]
        await phone.close()
        async with pg_admin() as admin:
            sessions = await admin.fetch(
                "SELECT client_port, application_name FROM pg_stat_activity WHERE datname = $1",
                name,
            )
    # A session over the socket has no client port (-1).
    assert sessions and {s["client_port"] for s in sessions} == {-1}
    assert sum(s["application_name"] == APPLICATION_NAME for s in sessions) == 2


async def socket_dir() -> str:
    """The directory of the tests' PostgreSQL's socket; the test is skipped where it has none
    on this machine (a server elsewhere)."""
    async with pg_admin() as admin:
        port = await admin.fetchval("SHOW port")
        listed = await admin.fetchval("SHOW unix_socket_directories")
    for folder in (d.strip() for d in listed.split(",") if d.strip()):
        # A stat of a local path, too quick to hand to a thread.
        if os.path.exists(os.path.join(folder, f".s.PGSQL.{port}")):  # noqa: ASYNC240
            return folder
    pytest.skip(f"PostgreSQL has no socket on this machine ({listed!r})")


class _Kind(StrEnum):
    FIRE = "fire"


class _Tier(IntEnum):
    ONE = 1


class _Text(str):
    pass


def test_json_is_written_as_with_non_str_keys_whatever_its_keys() -> None:
    # Tried without OPT_NON_STR_KEYS first: the same bytes as with it, keys of any kind.
    values = [
        {"a": [1, 2.5, None, {"b": "甲"}], "c": {"d": True}},
        {1: "one", "two": {2: [3]}},
        {_Kind.FIRE: 1, _Tier.ONE: 2, _Text("t"): 3, date(2026, 12, 6): 4, None: 5},
        [{"nested": {_Text("x"): {"y": 1}}}],
        "text",
    ]
    for value in values:
        assert json_text(value) == orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    with pytest.raises(orjson.JSONEncodeError):
        json_text({"too big": 2**70})


def test_new_ids_are_random_uuids_written_as_uuid4_writes_them() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(hex=i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert all(u.hex == i for u, i in zip(parsed, ids, strict=True))
    # Every one of the 122 random bits takes both values.
    ones = functools.reduce(operator.or_, (u.int for u in parsed))
    zeros = functools.reduce(operator.or_, (~u.int & (2**128 - 1) for u in parsed))
    fixed = (0xF << 76) | (0x3 << 62)
    assert ones | fixed == zeros | fixed == 2**128 - 1


class Rollbacks:
    """Counts the rollbacks aiosqlite's connections are asked for (the driver's, not ours)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = aiosqlite.Connection.rollback

        async def counted(connection: aiosqlite.Connection) -> None:
            self.count += 1
            await original(connection)

        monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)


async def test_a_sqlite_unit_of_work_that_ended_goes_back_to_the_pool_without_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each call to aiosqlite is a turn through its thread and back to the event loop; the
    # pool's reset sent a rollback for nothing after every committed unit of work.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/pool.db")
    sessions = create_sessionmaker(engine)
    rollbacks = Rollbacks(monkeypatch)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE kept (n INTEGER)"))
        rollbacks.count = 0  # (SQLAlchemy's own, once, after it first connects)
        async with sessions() as session:
            await session.execute(text("INSERT INTO kept VALUES (1)"))
            await session.commit()
        assert rollbacks.count == 0

        async with sessions() as session:
            await session.execute(text("INSERT INTO kept VALUES (2)"))
            await session.rollback()
        # The session's own; none more from the pool.
        assert rollbacks.count == 1
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT n FROM kept"))).scalars().all() == [1]
    finally:
        await engine.dispose()


async def test_a_sqlite_connection_given_back_with_its_transaction_open_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A transaction SQLAlchemy did not begin (a BEGIN sent by hand) is still open when the
    # connection goes back: the pool's reset ends it, so that the next unit of work neither
    # inherits its writes nor finds the database locked.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/pool.db")
    rollbacks = Rollbacks(monkeypatch)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE kept (n INTEGER)"))
        rollbacks.count = 0  # (SQLAlchemy's own, once, after it first connects)

        def leave_open(_: Session) -> None:
            pooled = engine.sync_engine.raw_connection()  # the pool's one connection
            cursor = pooled.cursor()
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO kept VALUES (1)")
            cursor.close()
            assert pooled.driver_connection.in_transaction
            pooled.close()  # back to the pool, the transaction open

        async with AsyncSession(engine) as session:
            await session.run_sync(leave_open)
        assert rollbacks.count == 1
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            assert raw.driver_connection is not None
            assert not raw.driver_connection.in_transaction
            assert (await connection.execute(text("SELECT n FROM kept"))).scalars().all() == []
    finally:
        await engine.dispose()


async def test_the_log_a_long_sqlite_read_let_grow_is_cut_back_once_the_read_has_ended(
    tmp_path: Path,
) -> None:
    # A reader's snapshot (a report's) keeps every commit made meanwhile in the write-ahead
    # log; once it ends, the writer checkpoints the log and, beginning it again, cuts the
    # file back to the limit, where without one it stayed as large as it had grown.
    path = tmp_path / "town.db"
    url = f"sqlite+aiosqlite:///{path}"
    wal = tmp_path / "town.db-wal"
    writer = create_engine(url)
    reader = create_engine(url, read_only=True)
    sessions = create_sessionmaker(writer)
    page = os.urandom(64 * 1024).hex()  # 128 KiB a row

    async def write(rows: int) -> None:
        for _ in range(rows):
            async with sessions() as session:
                await session.execute(text("INSERT INTO kept VALUES (:blob)"), {"blob": page})
                await session.commit()

    try:
        async with writer.begin() as connection:
            await connection.execute(text("CREATE TABLE kept (blob TEXT)"))
        async with AsyncSession(reader) as reading:
            await hold_snapshot(reading)
            await reading.execute(text("SELECT count(*) FROM kept"))  # the snapshot is taken
            await write(3 * WAL_SIZE_LIMIT // len(page))
            grown = wal.stat().st_size
            await reading.rollback()
        assert grown > 2 * WAL_SIZE_LIMIT
        await write(3)  # a checkpoint, then the log begun again from its start
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
        async with reader.connect() as reading:
            count = (await reading.execute(text("SELECT count(*) FROM kept"))).scalar()
        assert count == 3 * WAL_SIZE_LIMIT // len(page) + 3
    finally:
        await reader.dispose()
        await writer.dispose()
