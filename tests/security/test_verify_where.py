"""What ``dispatch audit verify`` tells the office of a record changed through SQL: the row, and
where it is in the office's terms (the incident by the time it was reported, its category and
village, the event by its type and time), every time in Beijing time; exit 1, no traceback.
An intact record says ``ok`` and nothing of the kind."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch.db import table_of
from dispatch.incidents.models import Dispatch, IncidentEvent
from dispatch.schemas import DISPLAY_TZ
from tests.security.test_checkpoint import verify
from tests.support import World

EVENTS, DISPATCHES = table_of(IncidentEvent), table_of(Dispatch)


def beijing(value: datetime) -> str:
    return value.astimezone(DISPLAY_TZ).isoformat()


async def an_arrival(world: World) -> tuple[dict[str, object], str]:
    """An incident in which tier 1's team arrived 70 s after the report (a breach)."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator, category="theft")
    world.clock.advance(70)
    assert await world.arrive(incident, team, leader) == 200
    return incident, incident["dispatches"][0]["id"]


async def arrival_and_report(connection: AsyncConnection) -> tuple[Row[Any], Row[Any]]:
    """The event rows of ``an_arrival``'s arrival and of its report."""
    arrived = (await connection.execute(select(EVENTS).where(EVENTS.c.type == "arrived"))).one()
    reported = (await connection.execute(select(EVENTS).where(EVENTS.c.type == "reported"))).one()
    return arrived, reported


async def test_an_intact_record_is_ok_and_names_nothing(world: World) -> None:
    await an_arrival(world)
    code, out, err = await verify(world)
    assert code == 0 and err == "", out + err
    assert out.startswith("ok: ") and "where:" not in out


async def test_an_arrival_moved_is_named_with_its_incident_in_beijing_time(world: World) -> None:
    incident, dispatch_id = await an_arrival(world)
    async with world.runtime.engine.begin() as connection:
        arrived, reported = await arrival_and_report(connection)
        earlier = arrived.at - timedelta(seconds=30)
        await connection.execute(
            update(DISPATCHES).where(DISPATCHES.c.id == dispatch_id).values(arrived_at=earlier)
        )

    code, out, err = await verify(world)
    assert code == 1 and "Traceback" not in err, out + err
    broken, where = out.splitlines()
    assert broken == (
        f"BROKEN: dispatches row {dispatch_id} (incident {incident['id']}): arrived_at "
        f"{beijing(earlier)} differs from its arrived event (incident_events row "
        f"id={arrived.id}, seq {arrived.seq}: {beijing(arrived.at)})"
    )
    assert beijing(earlier).endswith("+08:00")
    assert where == (
        f"where: incident {incident['id']}, reported {beijing(reported.at)} "
        f"(its reported event), theft, in no village"
    ), where
    assert incident["reported_at"] == beijing(reported.at), "as the pages show it"


async def test_an_event_changed_is_named_with_its_type_and_time(world: World) -> None:
    incident, _ = await an_arrival(world)
    async with world.runtime.engine.begin() as connection:
        arrived = (await connection.execute(select(EVENTS).where(EVENTS.c.type == "arrived"))).one()
        earlier = arrived.at - timedelta(seconds=30)
        await connection.execute(update(EVENTS).where(EVENTS.c.id == arrived.id).values(at=earlier))

    code, out, err = await verify(world)
    assert code == 1 and "Traceback" not in err, out + err
    broken, where = out.splitlines()
    assert broken.startswith(
        f"BROKEN: incident_events row id={arrived.id} (incident {incident['id']}, "
        f"seq {arrived.seq}): its hash does not match its content"
    ), broken
    assert where.startswith(f"where: incident {incident['id']}, reported ")
    assert where.endswith(f"; the event: arrived at {beijing(earlier)} as stored"), where


async def test_two_events_reordered_are_named_as_reordered(world: World) -> None:
    incident, _ = await an_arrival(world)
    async with world.runtime.engine.begin() as connection:
        chain = (
            await connection.execute(
                select(EVENTS.c.id, EVENTS.c.seq)
                .where(EVENTS.c.incident_id == incident["id"])
                .order_by(EVENTS.c.seq)
            )
        ).all()
        first, second = chain[2], chain[3]
        # Through a free seq: each incident's seqs are unique.
        for row, seq in ((first, 10_000), (second, first.seq), (first, second.seq)):
            await connection.execute(update(EVENTS).where(EVENTS.c.id == row.id).values(seq=seq))

    code, out, err = await verify(world)
    assert code == 1 and "Traceback" not in err, out + err
    assert out.splitlines()[0] == (
        f"BROKEN: incident_events row id={first.id} (incident {incident['id']}, seq "
        f"{second.seq}): expected seq {first.seq}, which the later row id={second.id} holds: "
        "the rows were reordered"
    ), out
