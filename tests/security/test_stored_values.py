"""``dispatch audit verify`` names a row an insider changed through SQL whatever he wrote into
it: a value that cannot be read is a named row, not a traceback; an event of a type the server
never records is named even with its chain hashed again; and on SQLite, where a time is text
and the reports compare that text, a time or flag that reads back as the value it stands for
but is stored in another form than the server writes is named, since the reports judge it
otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from dispatch.audit import chain
from dispatch.db import Base
from dispatch.incidents.models import IncidentEvent
from tests.security.test_hash_chain import broken, events_of, verify
from tests.support import Account, World


@asynccontextmanager
async def stored(
    world: World, table: str, column: str, where: str, value: str, **params: Any
) -> AsyncIterator[None]:
    """``column`` of the row ``where`` set to the SQL ``value`` while the block runs, as an
    insider would write it; then put back as the server writes it."""
    written = Base.metadata.tables[table].c[column]
    async with world.runtime.engine.begin() as connection:
        was = (await connection.execute(select(written).where(text(where)), params)).scalar_one()
        await connection.execute(
            text(f"UPDATE {table} SET {column} = {value} WHERE {where}"), params
        )
    try:
        yield
    finally:
        async with world.runtime.engine.begin() as connection:
            back = update(written.table).where(text(where)).values({column: was})
            await connection.execute(back, params)


async def tier1(world: World, by: Account) -> dict[str, int]:
    reply = await world.http.get("/api/v1/reports/response-times", headers=by.headers)
    assert reply.status_code == 200, reply.text
    (figures,) = [t for t in reply.json()["totals"] if t["tier"] == 1]
    return {"met": figures["met"], "breached": figures["breached"]}


async def a_late_arrival(world: World) -> tuple[dict[str, Any], str]:
    """An incident whose post arrived two seconds past tier 1's minute, and that dispatch."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    dispatch_id: str = incident["dispatches"][0]["id"]
    world.clock.advance(62)
    url = f"/api/v1/dispatches/{dispatch_id}/arrive"
    assert (await world.http.post(url, headers=leader.headers)).status_code == 200
    return incident, dispatch_id


async def test_a_time_or_flag_stored_in_another_form_than_the_servers_is_named(
    world: World, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL keeps times as timestamptz and flags as booleans: one form each")
    incident, dispatch_id = await a_late_arrival(world)
    admin = await world.admin()
    url = world.runtime.settings.database_url
    assert await tier1(world, admin) == {"met": 0, "breached": 1}
    assert (await asyncio.to_thread(verify, url))[0] == 0
    tier = "incident_id = :i AND tier = 1"
    async with world.runtime.engine.connect() as connection:
        (arrived,) = (
            await connection.execute(
                text(f"SELECT arrived_at FROM chain_tiers WHERE {tier}"), {"i": incident["id"]}
            )
        ).one()
    # The very same instant, written one hour behind UTC: the driver reads it as the arrival
    # the events record, the reports compare its text with the deadline's and find it met.
    utc = datetime.fromisoformat(arrived)
    behind = (utc - timedelta(hours=1)).isoformat(sep=" ", timespec="microseconds") + "-01:00"
    async with (
        stored(world, "chain_tiers", "arrived_at", tier, ":a", i=incident["id"], a=behind),
        stored(world, "dispatches", "arrived_at", "id = :d", ":a", d=dispatch_id, a=behind),
    ):
        assert await tier1(world, admin) == {"met": 1, "breached": 0}
        code, out = await asyncio.to_thread(verify, url)
    assert code == 1, out
    first, where = out.splitlines()
    assert first == (
        f"BROKEN: chain_tiers row (incident {incident['id']}, tier 1): arrived_at is stored as "
        f"'{behind}', not in the one form the server writes a time: UTC as "
        "'YYYY-MM-DD HH:MM:SS.ffffff', which SQL compares as text, so the same instant written "
        "otherwise is judged otherwise"
    )
    assert where.startswith(f"where: incident {incident['id']}, reported "), where

    events = await events_of(world, incident["id"])
    cases = [
        # The arrival was implied no delivery: 'false' reads as true, SQL tests it as false.
        ("dispatches", "delivered_implied", "id = :d", "'false'", {"d": dispatch_id}),
        ("dispatches", "accepted_implied", "id = :d", "2", {"d": dispatch_id}),
        ("chain_tiers", "covered", tier, "'true'", {"i": incident["id"]}),
        ("chain_tiers", "deadline", tier, "replace(deadline, ' ', 'T')", {"i": incident["id"]}),
        (
            "incidents",
            "reported_at",
            "id = :i",
            "substr(reported_at, 1, 23)",
            {"i": incident["id"]},
        ),
        ("incident_events", "at", "id = :e", "at || '+00:00'", {"e": events[1].id}),
    ]
    for table, column, where, value, params in cases:
        async with stored(world, table, column, where, value, **params):
            found = await broken(world)
        assert found is not None and f": {column} is stored as " in found, (column, found)
        assert table in found and incident["id"] in found, found
    code, out = await asyncio.to_thread(verify, url)
    assert code == 0, out
    assert await tier1(world, admin) == {"met": 0, "breached": 1}


async def test_a_value_that_cannot_be_read_is_named_not_a_traceback(
    world: World, backend: str
) -> None:
    incident, dispatch_id = await a_late_arrival(world)
    url = world.runtime.settings.database_url
    events = await events_of(world, incident["id"])
    event = {"e": events[1].id}
    tier = "incident_id = :i AND tier = 1"
    row = f"incident_events row id={events[1].id} (incident {incident['id']}, seq 2): its "
    # Times no Python datetime holds: SQLite keeps any text, PostgreSQL years up to 294276.
    never = "'someday'" if backend == "sqlite" else "'20000-01-01 00:00:00+00'"
    cases = [
        ("incident_events", "at", "id = :e", never, event, f"{row}at ("),
        (
            "chain_tiers",
            "deadline",
            tier,
            never,
            {"i": incident["id"]},
            f"chain_tiers row (incident {incident['id']}, tier 1): its deadline (",
        ),
        (
            "dispatches",
            "arrived_at",
            "id = :d",
            never,
            {"d": dispatch_id},
            f"dispatches row {dispatch_id} (incident {incident['id']}): its arrived_at (",
        ),
    ]
    if backend == "sqlite":
        cases += [
            ("incident_events", "data", "id = :e", "'{\"tier\": NaN}'", event, f"{row}data ("),
            # Text that is not UTF-8, which the driver cannot decode.
            (
                "incidents",
                "category",
                "id = :i",
                "CAST(X'FF' AS TEXT)",
                {"i": incident["id"]},
                f"incidents row {incident['id']}: its category cannot be read",
            ),
        ]
    else:
        cases += [
            (
                "incident_events",
                "data",
                "id = :e",
                "data || '{\"far\": 1e400}'",
                event,
                f"{row}data (",
            ),
        ]
    (table, column, where, value, params, named), *others = cases
    async with stored(world, table, column, where, value, **params):
        code, out = await asyncio.to_thread(verify, url)
    assert code == 1 and "Traceback" not in out, out
    assert out.startswith(f"BROKEN: {named}") and "cannot be read: " in out, out
    for table, column, where, value, params, named in others:
        async with stored(world, table, column, where, value, **params):
            found = await broken(world)
        assert found is not None and found.startswith(named), (named, found)
        assert "cannot be read: " in found and found.endswith(": the row was changed"), found
    code, out = await asyncio.to_thread(verify, url)
    assert code == 0, out


async def test_an_event_of_a_type_the_server_never_records_is_named(world: World) -> None:
    """Even appended with its hash and head computed again, as whoever can write the database
    can: the types the replay's own steps are named after included."""
    incident, _ = await a_late_arrival(world)
    url = world.runtime.settings.database_url
    last = (await events_of(world, incident["id"]))[-1]
    at = world.clock.now()
    for kind in ("tier", "hop", "dispatch", "_init__", "dispatched_at"):
        data = {"tier": 1, "dispatch_id": incident["dispatches"][0]["id"]}
        seq = last.seq + 1
        body = chain.canonical(incident["id"], seq, at, kind, None, data)
        forged = chain.link(last.hash, body)
        async with world.runtime.sessionmaker() as session, session.begin():
            session.add(
                IncidentEvent(
                    incident_id=incident["id"],
                    at=at,
                    type=kind,
                    actor_id=None,
                    data=data,
                    seq=seq,
                    prev_hash=last.hash,
                    hash=forged,
                )
            )
        async with world.runtime.engine.begin() as connection:
            await connection.execute(
                text("UPDATE incident_event_heads SET seq = :s, hash = :h WHERE incident_id = :i"),
                {"s": seq, "h": forged, "i": incident["id"]},
            )
        code, out = await asyncio.to_thread(verify, url)
        assert code == 1 and "Traceback" not in out, out
        (row,) = [e for e in await events_of(world, incident["id"]) if e.seq == seq]
        first, where = out.splitlines()
        assert first == (
            f"BROKEN: incident_events row id={row.id} (incident {incident['id']}, seq {seq}): "
            f"its type {kind!r} is none the server records"
        ), out
        assert where.startswith(f"where: incident {incident['id']}, reported "), where
        async with world.runtime.engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM incident_events WHERE id = :e"), {"e": row.id}
            )
            await connection.execute(
                text("UPDATE incident_event_heads SET seq = :s, hash = :h WHERE incident_id = :i"),
                {"s": last.seq, "h": last.hash, "i": incident["id"]},
            )
    code, out = await asyncio.to_thread(verify, url)
    assert code == 0, out
