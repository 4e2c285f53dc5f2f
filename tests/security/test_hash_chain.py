"""The incident event log is tamper-evident: SHA-256 chained per incident, checked by
``dispatch audit verify``, which names the first broken row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch import migrate
from dispatch.audit import chain
from dispatch.audit.chain import GENESIS, event_hash
from dispatch.auth.models import User
from dispatch.db import create_engine, create_sessionmaker
from dispatch.incidents.models import Incident, IncidentEvent
from tests.conftest import fresh_database
from tests.support import QINGXI, World


def verify(database_url: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "dispatch", "audit", "verify"],
        capture_output=True,
        text=True,
        env={**os.environ, "DISPATCH_DATABASE_URL": database_url},
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


async def sql(world: World, statement: str, **params: object) -> None:
    async with world.runtime.engine.begin() as connection:
        await connection.execute(text(statement), params)


async def events_of(world: World, incident_id: str) -> list[IncidentEvent]:
    async with world.runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.id)
        )
        return list(rows)


async def test_each_event_carries_the_hash_of_the_one_before(world: World) -> None:
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    dispatch_id = incident["dispatches"][0]["id"]
    for hop in ("accept", "arrive"):
        reply = await world.http.post(
            f"/api/v1/dispatches/{dispatch_id}/{hop}", headers=leader.headers
        )
        assert reply.status_code == 200
    rows = await events_of(world, incident["id"])
    assert [e.type for e in rows][:2] == ["reported", "dispatched"]
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    previous = GENESIS
    for e in rows:
        assert e.prev_hash == previous and e.hash == event_hash(e, previous)
        previous = e.hash
    code, out = await asyncio.to_thread(verify, world.runtime.settings.database_url)
    assert code == 0, out
    assert f"ok: {len(rows)} events in 1 incident chains" in out
    assert "seal: " in out


async def test_a_row_changed_removed_or_forged_through_sql_is_named(world: World) -> None:
    await world.team()
    operator = await world.operator()
    first = await world.report(operator)
    second = await world.report(operator, category="fire")
    url = world.runtime.settings.database_url
    assert (await asyncio.to_thread(verify, url))[0] == 0
    rows = await events_of(world, first["id"])
    target = rows[1]

    # Changed: the dispatch's facts rewritten.
    await sql(
        world,
        "UPDATE incident_events SET actor_id = :actor WHERE id = :id",
        actor=operator.id,
        id=target.id,
    )
    code, out = await asyncio.to_thread(verify, url)
    assert code == 1
    assert f"row id={target.id} " in out and "does not match its content" in out, out
    await sql(world, "UPDATE incident_events SET actor_id = NULL WHERE id = :id", id=target.id)
    assert (await asyncio.to_thread(verify, url))[0] == 0

    # Removed from the middle: the next row names the gap.
    await sql(world, "DELETE FROM incident_events WHERE id = :id", id=rows[0].id)
    code, out = await asyncio.to_thread(verify, url)
    assert code == 1 and f"row id={target.id} " in out and "a row is missing" in out, out

    # Removed from the end of another chain: its head says more rows existed.
    tail = (await events_of(world, second["id"]))[-1]
    await sql(world, "DELETE FROM incident_events WHERE incident_id = :i", i=first["id"])
    await sql(world, "DELETE FROM incident_event_heads WHERE incident_id = :i", i=first["id"])
    assert (await asyncio.to_thread(verify, url))[0] == 0
    await sql(world, "DELETE FROM incident_events WHERE id = :id", id=tail.id)
    code, out = await asyncio.to_thread(verify, url)
    assert code == 1 and f"incident {second['id']}: " in out and "rows are missing" in out, out


async def test_verify_sees_one_moment_of_a_live_database(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events written while verify runs are not a broken chain: verify reads the heads and
    the events as of one moment, here with a leader's hops landing between the two reads."""
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    dispatch_id = incident["dispatches"][0]["id"]
    before = len(await events_of(world, incident["id"]))
    read_events = chain._stream

    async def hops_land_between_the_reads(session: AsyncSession) -> AsyncIterator[IncidentEvent]:
        for hop in ("shown", "accept"):
            reply = await world.http.post(
                f"/api/v1/dispatches/{dispatch_id}/{hop}", headers=leader.headers
            )
            assert reply.status_code == 200, reply.text
        async for event in read_events(session):
            yield event

    monkeypatch.setattr(chain, "_stream", hops_land_between_the_reads)
    engine = create_engine(world.runtime.settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            verdict = await chain.verify(session)
    finally:
        await engine.dispose()
    assert verdict.broken is None, str(verdict.broken)
    assert verdict.events == before
    assert len(await events_of(world, incident["id"])) > before, "the hops were written"

    # What a live database hides nothing of: the same interleaving over a changed row.
    rows = await events_of(world, incident["id"])
    await sql(
        world,
        "UPDATE incident_events SET actor_id = :actor WHERE id = :id",
        actor=operator.id,
        id=rows[1].id,
    )
    engine = create_engine(world.runtime.settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            verdict = await chain.verify(session)
    finally:
        await engine.dispose()
    assert verdict.broken is not None and verdict.broken.event_id == rows[1].id


async def test_concurrent_hops_on_one_incident_never_fork_its_chain(world: World) -> None:
    teams = [await world.team(lon=QINGXI[0] + n * 0.0002) for n in range(4)]
    leaders = [await world.leader(t) for t in teams]
    operator = await world.operator()
    incident = await world.report(operator)
    mine = {d["team_id"]: d["id"] for d in incident["dispatches"]}

    async def respond(leader_index: int) -> None:
        leader = leaders[leader_index]
        dispatch_id = mine[teams[leader_index]["id"]]
        for hop in ("shown", "accept", "arrive"):
            reply = await world.http.post(
                f"/api/v1/dispatches/{dispatch_id}/{hop}", headers=leader.headers
            )
            assert reply.status_code == 200, reply.text

    await asyncio.gather(*(respond(n) for n in range(len(leaders))))
    rows = await events_of(world, incident["id"])
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert len({e.prev_hash for e in rows}) == len(rows)
    code, out = await asyncio.to_thread(verify, world.runtime.settings.database_url)
    assert code == 0, out


async def test_events_from_before_the_chain_are_sealed_by_the_migration(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        now = datetime(2026, 3, 1, 2, 30, 0, 123456, tzinfo=UTC)
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add(
                User(id="u1", name="u1", password_hash="x", role="operator", created_at=now)
            )
            await session.flush()
            for n in range(2):
                session.add(
                    Incident(
                        id=f"i{n}",
                        reported_at=now,
                        lon=QINGXI[0],
                        lat=QINGXI[1],
                        category="fight",
                        status="open",
                        reported_by="u1",
                    )
                )
                await session.flush()
                for kind, data in (
                    ("reported", {"lon": 114.159, "lat": 22.847}),
                    ("met", {"elapsed_s": 42.0}),
                ):
                    session.add(
                        IncidentEvent(
                            incident_id=f"i{n}", at=now, type=kind, actor_id=None, data=data
                        )
                    )
        async with create_sessionmaker(engine)() as session:
            sealed = [
                (e.id, e.hash)
                for e in await session.scalars(select(IncidentEvent).order_by(IncidentEvent.id))
            ]
        await engine.dispose()

        config = migrate.alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, "0008")
        await asyncio.to_thread(command.upgrade, config, "head")

        engine = create_engine(url)
        async with create_sessionmaker(engine)() as session:
            again = [
                (e.id, e.hash)
                for e in await session.scalars(select(IncidentEvent).order_by(IncidentEvent.id))
            ]
        await engine.dispose()
        # The same canonical form: sealing after the fact gives the hashes given at insert.
        assert again == sealed
        code, out = await asyncio.to_thread(verify, url)
        assert code == 0 and "ok: 4 events in 2 incident chains" in out, out
