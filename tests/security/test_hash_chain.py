"""The incident event log is tamper-evident: SHA-256 chained per incident, checked by
``dispatch audit verify``, which names the first broken row."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from pyproj import Geod
from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch import migrate
from dispatch.audit import chain
from dispatch.audit.chain import GENESIS, event_hash
from dispatch.auth.models import User
from dispatch.db import create_engine, create_sessionmaker, table_of
from dispatch.incidents.models import ChainTier, Dispatch, Incident, IncidentEvent
from dispatch.schemas import DISPLAY_TZ
from tests.conftest import fresh_database
from tests.support import QINGXI, Account, World

GEOD = Geod(ellps="WGS84")
INCIDENTS, TIERS, DISPATCHES = table_of(Incident), table_of(ChainTier), table_of(Dispatch)
EVENTS = table_of(IncidentEvent)


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


def at(metres: float, azimuth: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return float(lon), float(lat)


@dataclass
class Day:
    """A day of the town's work, every path that writes the rows the reports judge from."""

    operator: Account
    # A: met by geofence; tier 2 breached by the timer, its patrol arriving later by button
    # (accept and delivery implied, the delivery then observed when the patrol's phone came
    # online and acknowledged its alert); tier 3 met by an operator on the radio; closed.
    a: dict[str, Any]
    # B: tier 1 escalated to the wider ring, met by the ring team; closed before tiers 2
    # and 3 fell due (cancelled).
    b: dict[str, Any]
    # C: no tier-1 zone covers it, the ring alerted with the report; tier 1 breached, open.
    c: dict[str, Any]
    post: dict[str, Any]
    ring: dict[str, Any]
    patrol: dict[str, Any]
    response: dict[str, Any]


def dispatch_of(incident: dict[str, Any], team: dict[str, Any]) -> str:
    found: str = next(d["id"] for d in incident["dispatches"] if d["team_id"] == team["id"])
    return found


async def a_day_of_work(world: World) -> Day:
    post = await world.team("fixed_post")
    ring = await world.team("mobile", *at(800, 90))  # its 500 m zone does not cover QINGXI
    patrol = await world.team("patrol", radius_m=5000)
    response = await world.team("response", radius_m=5000)
    post_leader, ring_leader = await world.leader(post), await world.leader(ring)
    patrol_leader = await world.leader(patrol)
    operator = await world.operator()
    post_phone = await world.connect(post_leader)

    async def hop(leader: Account, dispatch_id: str, verb: str, **body: Any) -> dict[str, Any]:
        url = f"/api/v1/dispatches/{dispatch_id}/{verb}"
        reply = await world.http.post(url, json=body, headers=leader.headers)
        assert reply.status_code == 200, reply.text
        answer: dict[str, Any] = reply.json()
        return answer

    def device_time(offset_s: float) -> str:
        return (world.clock.now() + timedelta(seconds=offset_s)).isoformat()

    async def phone_acks(incident: dict[str, Any]) -> None:
        await post_phone.next_of("alert")
        await post_phone.ack()
        await world.wait_for(
            operator,
            incident["id"],
            lambda i: all(d["delivered_at"] for d in i["dispatches"] if d["team_id"] == post["id"]),
        )

    a = await world.report(operator)
    await phone_acks(a)
    world.clock.advance(5)
    await hop(post_leader, dispatch_of(a, post), "shown", device_time=device_time(-1))
    world.clock.advance(5)
    await hop(post_leader, dispatch_of(a, post), "accept", device_time=device_time(-2))
    world.clock.advance(20)
    fix = {"location": dict(zip(("lon", "lat"), at(20, 0), strict=True)), "accuracy_m": 8}
    assert (await hop(post_leader, dispatch_of(a, post), "position", **fix))["arrived"]

    b = await world.report(operator)
    await phone_acks(b)
    world.clock.advance(20)
    b = await world.wait_for(operator, b["id"], lambda i: len(i["dispatches"]) == 4)
    world.clock.advance(5)
    await hop(ring_leader, dispatch_of(b, ring), "accept")
    world.clock.advance(5)
    on_scene = {"lon": QINGXI[0], "lat": QINGXI[1]}
    await hop(ring_leader, dispatch_of(b, ring), "arrive", location=on_scene)

    c = await world.report(operator, *at(600, 270))
    await phone_acks(c)
    world.clock.advance(10)
    reply = await world.http.post(f"/api/v1/incidents/{b['id']}/close", headers=operator.headers)
    assert reply.status_code == 200, reply.text

    world.clock.advance(111)  # A + 181 s
    await world.wait_for(operator, a["id"], lambda i: i["chain"][1]["status"] == "breached")
    await world.wait_for(operator, c["id"], lambda i: i["chain"][0]["status"] == "breached")
    world.clock.advance(1)
    late = {"location": on_scene, "accuracy_m": 12}
    await hop(patrol_leader, dispatch_of(a, patrol), "arrive", device_time=device_time(3), **late)
    # The patrol's phone comes online: its replayed alert's ack replaces the implied delivery.
    world.clock.advance(2)
    patrol_phone = await world.connect(patrol_leader)
    await patrol_phone.next_of("alert")
    await patrol_phone.ack()
    patrol_hops = dispatch_of(a, patrol)
    await world.wait_for(
        operator,
        a["id"],
        lambda i: any(
            d["id"] == patrol_hops and not d["delivered_implied"] for d in i["dispatches"]
        ),
    )
    await patrol_phone.close()
    world.clock.advance(16)
    await hop(operator, dispatch_of(a, response), "arrive")
    world.clock.advance(10)
    reply = await world.http.post(f"/api/v1/incidents/{a['id']}/close", headers=operator.headers)
    assert reply.status_code == 200, reply.text
    await post_phone.close()

    a, b, c = [await world.incident(operator, i["id"]) for i in (a, b, c)]
    assert [t["status"] for t in a["chain"]] == ["met", "breached", "met"]
    assert [t["status"] for t in b["chain"]] == ["met", "cancelled", "cancelled"]
    assert [t["status"] for t in c["chain"]] == ["breached", "pending", "pending"]
    assert {(d["team_id"], d["ring"]) for d in b["dispatches"]} >= {(ring["id"], 1)}
    assert {(d["team_id"], d["ring"]) for d in c["dispatches"]} >= {(post["id"], 1)}
    sources = {d["team_id"]: d["arrival_source"] for d in a["dispatches"]}
    assert sources == {post["id"]: "geofence", patrol["id"]: "button", response["id"]: "operator"}
    implied = {
        d["team_id"]: (d["delivered_implied"], d["accepted_implied"]) for d in a["dispatches"]
    }
    assert implied[patrol["id"]] == (False, True)
    return Day(operator, a, b, c, post, ring, patrol, response)


@asynccontextmanager
async def changed(
    world: World, table: Table, where: Any, values: dict[str, Any] | None = None
) -> AsyncIterator[None]:
    """Rows changed through SQL (deleted without ``values``) while the block runs, as an
    insider would change them; then put back as they were."""
    async with world.runtime.engine.begin() as connection:
        before = [dict(r._mapping) for r in await connection.execute(select(table).where(where))]
        assert before, "the change must touch a row"
        if values is None:
            await connection.execute(delete(table).where(where))
        else:
            await connection.execute(update(table).where(where).values(values))
    try:
        yield
    finally:
        async with world.runtime.engine.begin() as connection:
            if values is None:
                await connection.execute(insert(table), before)
            else:
                (was,) = before
                await connection.execute(update(table).where(where).values(was))


async def broken(world: World) -> str | None:
    """What ``dispatch audit verify`` names first, found in this process (a few at a time
    through the command line cost seconds each)."""
    engine = create_engine(world.runtime.settings.database_url, read_only=True)
    try:
        async with create_sessionmaker(engine)() as session:
            verdict = await chain.verify(session)
    finally:
        await engine.dispose()
    return None if verdict.broken is None else str(verdict.broken)


async def row(world: World, table: Table, where: Any) -> Any:
    async with world.runtime.engine.connect() as connection:
        return (await connection.execute(select(table).where(where))).one()


def hashed_as_ever(data: Any) -> bytes:
    """The bytes every stored row's hash was made of, as the chain always wrote them (its
    values normalised as stores hand them back: integral floats as integers, and so on)."""
    at = datetime(2026, 11, 29, 8, 30, 0, 1, tzinfo=UTC)
    row = {
        "incident_id": "i" * 32,
        "seq": 7,
        "at": at.isoformat(timespec="microseconds"),
        "type": "dispatch.alerted",
        "actor_id": None,
        "data": chain._normal(data, []),
    }
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hashed_now(data: Any) -> bytes:
    at = datetime(2026, 11, 29, 16, 30, 0, 1, tzinfo=timezone(timedelta(hours=8)))
    return chain.canonical("i" * 32, 7, at, "dispatch.alerted", None, data)


def test_rows_are_hashed_over_the_bytes_they_always_were() -> None:
    # A row sealed before must verify after: the canonical text may not change by a byte,
    # whoever writes it.
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    keys = {text[n : n + 3]: n for n in range(0, len(text), 4099)}
    rng = random.Random(135)
    floats = [rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 22) for _ in range(20_000)]
    numbers = [2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 1e-05, 1e16, 5e-324]
    for data in (
        {"text": text, "keys": keys},
        {"floats": floats, "numbers": numbers},
        {"距离": 12.5, "位置": {"lon": 114.1612, "lat": 22.849}, "team": None, "ok": True},
    ):
        assert hashed_now(data) == hashed_as_ever(data)
    assert hashed_now({"n": 2.0, "t": (1, 2), 3: "k"}) == hashed_as_ever(
        {"n": 2, "t": [1, 2], "3": "k"}
    )


def test_text_that_is_not_unicode_is_refused_as_ever() -> None:
    with pytest.raises(UnicodeEncodeError):
        hashed_as_ever({"text": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        hashed_now({"text": "\ud800"})


async def test_a_time_in_event_data_is_refused_where_written_not_hashed_otherwise_than_stored(
    world: World,
) -> None:
    """JSON keeps no time: the store writes one as text of its own, orjson rounding an offset
    to the minute (Shanghai's mean time before 1901, +08:05:43, as +08:06), so a hash made
    over another text would fail verify ever after. Events carry times as text."""
    await world.team()
    incident = await world.report(await world.operator())
    local_mean_time = datetime(1900, 6, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert local_mean_time.isoformat().endswith("+08:05:43")
    with pytest.raises(TypeError, match="event data holds a datetime"):
        async with world.runtime.sessionmaker() as session, session.begin():
            session.add(
                IncidentEvent(
                    incident_id=incident["id"],
                    at=world.clock.now(),
                    type="shown",
                    actor_id=None,
                    data={"device_time": local_mean_time},
                )
            )
    code, out = await asyncio.to_thread(verify, world.runtime.settings.database_url)
    assert code == 0, out


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
    assert out == (
        f"ok: {len(rows)} events in 1 incident chains\n"
        "unchecked: 0 of 1 incidents recorded before the events carried their category, "
        "description, village, tier targets and arrival positions (lon, lat, accuracy): those "
        "are not checked\n"
    )


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
    # The others found the same way in-process: what the command line prints after BROKEN.
    await sql(world, "UPDATE incident_events SET actor_id = NULL WHERE id = :id", id=target.id)
    assert await broken(world) is None

    # Removed from the end of a chain: its head says more rows existed.
    tail = (await events_of(world, second["id"]))[-1]
    async with changed(world, EVENTS, EVENTS.c.id == tail.id):
        found = await broken(world)
    assert found is not None, "the tail's removal went unseen"
    assert f"incident {second['id']}: " in found and "rows are missing" in found, found
    assert await broken(world) is None

    # Removed from the middle: the next row names the gap.
    await sql(world, "DELETE FROM incident_events WHERE id = :id", id=rows[0].id)
    found = await broken(world)
    assert found is not None and f"row id={target.id} " in found, found
    assert "a row is missing" in found, found

    # A whole chain removed, head and all: the incident's row is left with no events.
    await sql(world, "DELETE FROM incident_events WHERE incident_id = :i", i=first["id"])
    await sql(world, "DELETE FROM incident_event_heads WHERE incident_id = :i", i=first["id"])
    code, out = await asyncio.to_thread(verify, url)
    assert code == 1 and f"incidents row {first['id']}: no reported event records it" in out, out


async def test_a_day_of_work_on_every_path_verifies(world: World) -> None:
    """No false alarm: the rows the reports judge from, after deliveries, escalations,
    arrivals of every source, breaches and closes, are what their events record."""
    await a_day_of_work(world)
    code, out = await asyncio.to_thread(verify, world.runtime.settings.database_url)
    assert code == 0, out


async def test_a_row_the_reports_judge_from_changed_through_sql_is_named(world: World) -> None:
    """The reports read incidents, chain_tiers and dispatches, which no hash covers: each is
    checked against the events that record it, and the first row that differs is named."""
    day = await a_day_of_work(world)
    url = world.runtime.settings.database_url
    a, b = day.a, day.b
    patrol = dispatch_of(a, day.patrol)
    late = await row(world, DISPATCHES, DISPATCHES.c.id == patrol)
    a_tier = (TIERS.c.incident_id == a["id"]) & (TIERS.c.tier == 2)
    reported = datetime.fromisoformat(a["reported_at"])
    # The breach of the review: the patrol on scene at 181 s moved to 151 s, its tier with it.
    moved = reported + timedelta(seconds=151)
    met = {"status": "met", "arrived_at": moved, "elapsed_s": 151.0, "breached_at": None}
    cases: list[tuple[Table, Any, dict[str, Any] | None, str]] = [
        (
            DISPATCHES,
            DISPATCHES.c.id == patrol,
            {"arrived_at": moved},
            f"dispatches row {patrol} (incident {a['id']}): arrived_at "
            f"{moved.astimezone(DISPLAY_TZ).isoformat()} differs from its arrived event "
            "(incident_events "
            "row id=",
        ),
        (
            TIERS,
            a_tier,
            met,
            f"chain_tiers row (incident {a['id']}, tier 2): status met differs from its "
            "breached event (",
        ),
        (
            TIERS,
            a_tier,
            {"target_s": 240.0, "deadline": reported + timedelta(seconds=240)},
            "tier 2): target_s 240.0 differs from its breached event (",
        ),
        (
            TIERS,
            (TIERS.c.incident_id == a["id"]) & (TIERS.c.tier == 1),
            {"target_s": 20.0, "deadline": reported + timedelta(seconds=20)},
            "tier 1): target_s 20.0 differs from its reported event (",
        ),
        (
            TIERS,
            (TIERS.c.incident_id == a["id"]) & (TIERS.c.tier == 1),
            {"deadline": reported + timedelta(seconds=20)},
            "tier 1): deadline",
        ),
        # The copies of the incident's times that the reports judge by.
        (
            TIERS,
            a_tier,
            {"incident_reported_at": reported + timedelta(seconds=30)},
            "tier 2): incident_reported_at",
        ),
        (
            TIERS,
            (TIERS.c.incident_id == b["id"]) & (TIERS.c.tier == 3),
            {"incident_closed_at": None},
            f"chain_tiers row (incident {b['id']}, tier 3): incident_closed_at",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == patrol,
            {"incident_reported_at": reported - timedelta(hours=1)},
            f"dispatches row {patrol} (incident {a['id']}): incident_reported_at",
        ),
        (TIERS, a_tier, None, f"chain_tiers (incident {a['id']}): no row for tier 2"),
        (
            DISPATCHES,
            DISPATCHES.c.id == patrol,
            None,
            f"no row for dispatch {patrol}, which its dispatched event records",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == dispatch_of(a, day.post),
            {"arrival_source": "button"},
            "arrival_source button differs from its arrived event (",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == dispatch_of(b, day.ring),
            {"accepted_at": datetime.fromisoformat(b["reported_at"])},
            "accepted_at",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == dispatch_of(b, day.patrol),
            {"delivered_at": datetime.fromisoformat(b["reported_at"])},
            "delivered_at",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == dispatch_of(a, day.post),
            {"delivered_implied": True},
            "delivered_implied true differs from its delivered event (",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == patrol,
            {"accepted_implied": False},
            "accepted_implied false differs from its accepted event (",
        ),
        (
            DISPATCHES,
            DISPATCHES.c.id == patrol,
            {"delivered_implied": True, "delivered_at": late.accepted_at},
            "delivered_at",
        ),
        (
            TIERS,
            (TIERS.c.incident_id == day.c["id"]) & (TIERS.c.tier == 1),
            {"status": "cancelled"},
            "status cancelled differs from its breached event (",
        ),
        (
            INCIDENTS,
            INCIDENTS.c.id == b["id"],
            {"closed_at": None, "status": "open"},
            f"incidents row {b['id']}: status open differs from its closed event (",
        ),
        (
            INCIDENTS,
            INCIDENTS.c.id == a["id"],
            {"reported_at": reported + timedelta(seconds=30)},
            "reported_at",
        ),
    ]
    # The review's case through the command line, the others found the same way in-process.
    table, where, values, named = cases[0]
    async with changed(world, table, where, values):
        code, out = await asyncio.to_thread(verify, url)
    assert code == 1 and f"BROKEN: {named}" in out, out
    for table, where, values, named in cases[1:]:
        async with changed(world, table, where, values):
            found = await broken(world)
        assert found is not None and named in found, (named, found)
    # A dispatch no event records: a team credited with an arrival it never made.
    forged = {**late._mapping, "id": "f" * 32}
    async with world.runtime.engine.begin() as connection:
        await connection.execute(insert(DISPATCHES), forged)
    found = await broken(world)
    forger = f"dispatches row {'f' * 32} (incident {a['id']})"
    assert found == f"{forger}: no dispatched event records it", found
    async with world.runtime.engine.begin() as connection:
        await connection.execute(delete(DISPATCHES).where(DISPATCHES.c.id == "f" * 32))
    # Every change put back: as the events record it again.
    code, out = await asyncio.to_thread(verify, url)
    assert code == 0, out


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
    read_range = chain._read_range

    async def hops_land_between_the_reads(
        session: AsyncSession, after: str | None, upto: str | None
    ) -> Any:
        for hop in ("shown", "accept"):
            reply = await world.http.post(
                f"/api/v1/dispatches/{dispatch_id}/{hop}", headers=leader.headers
            )
            assert reply.status_code == 200, reply.text
        return await read_range(session, after, upto)

    monkeypatch.setattr(chain, "_read_range", hops_land_between_the_reads)
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


async def test_verify_reads_the_incidents_a_slice_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linear over any number of incidents: the same few statements for each slice of them,
    none for each incident."""
    await world.team()
    operator = await world.operator()
    for _ in range(5):
        await world.report(operator)
    monkeypatch.setattr(chain, "CHUNK", 2)
    engine = create_engine(world.runtime.settings.database_url, read_only=True)
    sent: list[str] = []
    sqlalchemy_event.listen(
        engine.sync_engine, "before_cursor_execute", lambda *args: sent.append(args[2])
    )
    try:
        async with create_sessionmaker(engine)() as session:
            verdict = await chain.verify(session)
    finally:
        await engine.dispose()
    assert verdict.broken is None and verdict.incidents == 5
    reads = [s for s in sent if s.lstrip().upper().startswith("SELECT")]
    # Slices of two, two and one incident: each its incidents (with their villages' names),
    # then the heads, events, tiers, dispatches and skipped teams of their range.
    assert len(reads) == 3 * 6, reads


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
                for tier, target_s in enumerate((60.0, 180.0, 300.0), 1):
                    session.add(
                        ChainTier(
                            incident_id=f"i{n}",
                            tier=tier,
                            target_s=target_s,
                            deadline=now + timedelta(seconds=target_s),
                            status="met" if tier == 1 else "pending",
                            covered=False,
                            incident_reported_at=now,
                        )
                    )
                for kind, actor_id, data in (
                    ("reported", "u1", {"lon": 114.159, "lat": 22.847}),
                    ("met", None, {"tier": 1, "elapsed_s": 42.0}),
                ):
                    session.add(
                        IncidentEvent(
                            incident_id=f"i{n}", at=now, type=kind, actor_id=actor_id, data=data
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
