"""A close that waited behind an escalation step: its call came in before the step fired (or
before the step read the clock), and it is written after the step committed. The close is
recorded after what the step recorded (the ``escalated`` event, dated at the step's due time,
and the ring's dispatches): nothing is on record after the ``closed`` event."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from pyproj import Geod
from sqlalchemy import event

from tests.conftest import RunningServer
from tests.rosters.races import postgres_dsn
from tests.support import QINGXI, World

GEOD = Geod(ellps="WGS84")


def at(metres: float, azimuth: float = 0.0) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return float(lon), float(lat)


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _job_done(dsn: str, incident_id: str) -> None:
    watcher = await asyncpg.connect(dsn)
    try:
        for _ in range(500):
            status = await watcher.fetchval(
                "SELECT status FROM jobs WHERE incident_id = $1 AND kind = 'escalate'",
                incident_id,
            )
            if status == "done":
                return
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()
    raise AssertionError("the escalation step never fired")


async def _check_nothing_after_close(
    world: World, operator: Any, incident_id: str, ringed: bool = True
) -> None:
    closed = await world.incident(operator, incident_id)
    assert closed["status"] == "closed"
    ring = [d for d in closed["dispatches"] if d["ring"] == 1]
    assert bool(ring) == ringed
    events = (
        await world.http.get(f"/api/v1/incidents/{incident_id}/events", headers=operator.headers)
    ).json()
    kinds = [(e["type"], e["at"]) for e in events]
    closed_at = t(closed["closed_at"])
    late = [d["alerted_at"] for d in ring if t(d["alerted_at"]) > closed_at]
    after = [e for e in events if t(e["at"]) > closed_at]
    assert not late and not after, (
        f"closed_at {closed['closed_at']}, ring alerted at {late}; timeline {kinds}"
    )


@pytest.mark.parametrize("ring_team", [True, False])
async def test_a_close_is_recorded_after_an_escalation_that_fired_while_it_waited(
    world: World, ring_team: bool
) -> None:
    """PostgreSQL: the close's call comes in at +19 s; before its first statement (the
    incident's lock) runs, the clock passes the escalation's due time and the step fires and
    commits at +21 s (the close waiting for a connection, its body or its token's owner,
    as docs/api.md allows). The close is recorded at the step's time, not +19 s."""
    dsn = postgres_dsn(world)
    await world.team("fixed_post")
    if ring_team:
        await world.team("mobile", *at(800, 90))  # in the 1 km ring, does not cover
    # Without one the step still records its ``escalated`` event (dated at its due time, +20 s).
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(19)
    fired: list[bool] = []

    async def escalate_meanwhile(_: Any) -> None:
        world.clock.advance(2)
        await _job_done(dsn, incident["id"])

    def before(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        locks = statement.startswith("SELECT incidents.") and "FOR NO KEY UPDATE" in statement
        if not fired and locks:
            fired.append(True)
            connection.connection.dbapi_connection.run_async(escalate_meanwhile)

    engine = world.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        reply = await world.http.post(
            f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
        )
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert fired
    assert reply.status_code == 200, reply.text
    await _check_nothing_after_close(world, operator, incident["id"], ring_team)


def requests_in_flight(server: RunningServer) -> set[asyncio.Task[None]]:
    """The server's tasks of the requests it has taken in and not yet answered."""
    return set(server.server.server_state.tasks)


async def call_came_in(server: RunningServer, before: set[asyncio.Task[None]]) -> None:
    """Wait until the server has taken in a request that was not in flight ``before``: its
    task is made as it comes in, and the request's time is taken as that task starts."""
    for _ in range(1000):
        if requests_in_flight(server) - before:
            # The request's task, made before this one looked, runs before this one resumes.
            await asyncio.sleep(0)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the request never reached the server")


async def test_a_close_queued_behind_an_escalation_step_is_recorded_after_it(
    world: World, server: RunningServer, backend: str
) -> None:
    """SQLite: the timer has claimed the due escalation step on the one writer connection; the
    close's call comes in (at +20 s) and queues for the connection; the step reads the clock
    for its work after that (+22 s) and commits; the close is recorded at +22 s, not +20 s."""
    if backend != "sqlite":
        pytest.skip("the one writer connection queues the close behind the timer on SQLite")
    await world.team("fixed_post")
    await world.team("mobile", *at(800, 90))
    operator = await world.operator()
    incident = await world.report(operator)
    armed: list[bool] = []
    fired: list[asyncio.Task[Any]] = []

    async def close_meanwhile(_: Any) -> None:
        before = requests_in_flight(server)
        fired.append(
            asyncio.ensure_future(
                world.http.post(
                    f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
                )
            )
        )
        await call_came_in(server, before)  # ... and waits for the writer
        assert not fired[0].done()
        world.clock.advance(2)

    def after(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if armed and not fired and "FROM jobs" in statement and "jobs.due_at <=" in statement:
            connection.connection.dbapi_connection.run_async(close_meanwhile)

    engine = world.runtime.engine.sync_engine
    event.listen(engine, "after_cursor_execute", after)
    try:
        world.clock.advance(20)
        armed.append(True)
        for _ in range(500):
            if fired:
                break
            await asyncio.sleep(0.01)
        assert fired, "the timer never claimed the step"
        reply = await fired[0]
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert reply.status_code == 200, reply.text
    await _check_nothing_after_close(world, operator, incident["id"])
