"""The 1-3-5 chain: accepted, arrived, met, breached, cancelled, on record."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text

from dispatch.auth.models import Role
from dispatch.auth.service import Principal
from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.incidents import service as incidents
from dispatch.incidents.models import ChainTier, Dispatch
from tests.conftest import RunningServer, world_serving
from tests.incidents.test_close_after_escalation import call_came_in, requests_in_flight
from tests.reports.test_response_times import settle
from tests.rosters.races import postgres_dsn, when_blocked_or_done
from tests.support import QINGXI, World


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def tier(incident: dict[str, Any], n: int) -> dict[str, Any]:
    entry: dict[str, Any] = incident["chain"][n - 1]
    return entry


def dispatch_of(incident: dict[str, Any], team: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in incident["dispatches"] if d["team_id"] == team["id"])
    return found


async def test_arrival_within_target_meets_the_tier(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    d = dispatch_of(incident, team)

    world.clock.advance(12)
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/accept", headers=leader.headers)
    assert reply.status_code == 200
    accepted = dispatch_of(reply.json(), team)
    assert t(accepted["accepted_at"]) - t(incident["reported_at"]) == _s(12)
    assert accepted["delivered_at"] is not None, "accepting proves the alert was received"

    world.clock.advance(40)
    reply = await world.http.post(
        f"/api/v1/dispatches/{d['id']}/arrive",
        json={"location": {"lon": 114.1591, "lat": 22.8471}},
        headers=leader.headers,
    )
    assert reply.status_code == 200
    after = reply.json()
    assert tier(after, 1)["status"] == "met"
    assert tier(after, 1)["elapsed_s"] == 52
    arrived = dispatch_of(after, team)
    assert arrived["arrival_source"] == "button"
    assert 10 < arrived["arrival_distance_m"] < 20
    assert tier(after, 2)["status"] == "pending"


async def test_arrival_exactly_at_the_deadline_meets_it(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    d = dispatch_of(incident, team)
    world.clock.advance(60)
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    assert tier(reply.json(), 1)["status"] == "met"
    assert tier(reply.json(), 1)["elapsed_s"] == 60


async def test_a_missed_deadline_is_breached_at_the_deadline(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    await console.next_of("incident.updated")

    world.clock.advance(75)
    breach = await console.next_of("chain.breached")
    assert breach["data"]["incident_id"] == incident["id"]
    assert breach["data"]["tier"]["tier"] == 1
    assert breach["data"]["tier"]["breached_at"] == tier(incident, 1)["deadline"]
    after = await world.incident(operator, incident["id"])
    assert tier(after, 1)["status"] == "breached"
    assert tier(after, 1)["breached_at"] == tier(incident, 1)["deadline"]
    assert tier(after, 2)["status"] == "pending"

    # Arriving late is still recorded, with its elapsed time; the breach stands.
    d = dispatch_of(incident, team)
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    late = reply.json()
    assert tier(late, 1)["status"] == "breached"
    assert tier(late, 1)["elapsed_s"] == 75
    await console.close()


async def test_a_deadline_passed_by_the_clocks_least_step_is_breached_by_the_timer(
    settings: Settings, clock: ManualClock
) -> None:
    """The timer looked at a deadline again only a millisecond past it: a clock stopped 1 µs
    past a deadline (beyond it, so the tier is due) left the tier pending until something
    else moved the clock or woke the timer, and waiting for the timers to settle failed."""
    # Nothing else wakes the timer: no poll and no escalation step before the deadline.
    settings.timer_poll_s = settings.escalation_after_s = 3600
    async with world_serving(settings, clock) as world:
        await world.team("fixed_post")
        operator = await world.operator()
        console = await world.connect(operator)
        incident = await world.report(operator)
        await console.next_of("incident.updated")
        await settle(world)

        deadline = t(tier(incident, 1)["deadline"])
        assert clock.advance((deadline - clock.now()).total_seconds()) == deadline
        await settle(world)
        assert tier(await world.incident(operator, incident["id"]), 1)["status"] == "pending"
        assert clock.advance(0.000001) == deadline + timedelta(microseconds=1)
        await settle(world)
        breach = await console.next_of("chain.breached")
        assert breach["data"]["incident_id"] == incident["id"]
        assert breach["data"]["tier"]["tier"] == 1
        assert breach["data"]["tier"]["breached_at"] == tier(incident, 1)["deadline"]
        await console.close()


async def test_late_arrival_before_the_timer_notices_is_a_breach(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    d = dispatch_of(incident, team)
    # Move time without letting the timer run first: the arrival itself must judge.
    world.runtime.settings.timer_poll_s = 3600
    world.clock.advance(61)
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    assert tier(reply.json(), 1)["status"] == "breached"
    assert tier(reply.json(), 1)["breached_at"] == tier(incident, 1)["deadline"]


async def test_breach_noticed_on_start_is_recorded_at_its_deadline(
    server: RunningServer, world: World
) -> None:
    operator = await world.operator()
    await world.team("fixed_post")
    incident = await world.report(operator)
    await server.stop()
    server.clock.advance(400)
    restarted = RunningServer(server.settings, server.clock)
    await restarted.start()
    try:
        again = World(restarted.app, f"http://127.0.0.1:{restarted.port}", server.clock)
        after = await again.wait_for(
            operator, incident["id"], lambda i: tier(i, 3)["status"] == "breached"
        )
        for n in (1, 2, 3):
            assert tier(after, n)["status"] == "breached"
            assert tier(after, n)["breached_at"] == tier(incident, n)["deadline"]
        await again.close()
    finally:
        await restarted.stop()


async def test_a_leader_cannot_act_on_another_teams_dispatch(world: World) -> None:
    mine = await world.team("fixed_post")
    other = await world.team("mobile")
    other_leader = await world.leader(other)
    incident = await world.report(await world.operator())
    d = dispatch_of(incident, mine)
    for action in ("accept", "arrive"):
        reply = await world.http.post(
            f"/api/v1/dispatches/{d['id']}/{action}", headers=other_leader.headers
        )
        assert reply.status_code == 403, reply.text
    reply = await world.http.get(
        f"/api/v1/incidents/{incident['id']}", headers=other_leader.headers
    )
    assert reply.status_code == 200, "the other team was dispatched too"
    auditor = await world.account("auditor")
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/accept", headers=auditor.headers)
    assert reply.status_code == 403


async def test_closing_cancels_pending_clocks_and_ends_actions(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    d = dispatch_of(incident, team)
    await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    world.clock.advance(30)
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    closed = reply.json()
    assert closed["status"] == "closed"
    assert [c["status"] for c in closed["chain"]] == ["met", "cancelled", "cancelled"]
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/accept", headers=leader.headers)
    assert reply.status_code == 409
    world.clock.advance(600)
    after = await world.incident(operator, incident["id"])
    assert [c["status"] for c in after["chain"]] == ["met", "cancelled", "cancelled"]
    listed = await world.http.get("/api/v1/incidents?status=open", headers=operator.headers)
    assert listed.json() == []


async def test_tiers_and_dispatches_keep_their_incidents_report_and_close_times(
    world: World,
) -> None:
    """The reports judge each tier and dispatch from its own row: each keeps a copy of its
    incident's report time, and every tier, the met one too, the close's time."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    d = dispatch_of(incident, team)
    await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)

    async def copies() -> tuple[set[Any], set[Any], set[Any]]:
        async with world.runtime.transaction() as session:
            tiers = (await session.execute(
                select(ChainTier.incident_reported_at, ChainTier.incident_closed_at)
                .where(ChainTier.incident_id == incident["id"])
            )).all()  # fmt: skip
            dispatched = await session.scalars(
                select(Dispatch.incident_reported_at).where(Dispatch.incident_id == incident["id"])
            )
            return {t[0] for t in tiers}, {t[1] for t in tiers}, set(dispatched)

    reported = t(incident["reported_at"])
    assert await copies() == ({reported}, {None}, {reported})
    world.clock.advance(30)
    closed = (
        await world.http.post(f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers)
    ).json()
    assert [c["status"] for c in closed["chain"]] == ["met", "cancelled", "cancelled"]
    assert await copies() == ({reported}, {t(closed["closed_at"])}, {reported})


HOPS: dict[str, dict[str, Any]] = {
    "shown": {},
    "accept": {},
    "arrive": {},
    "position": {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "accuracy_m": 5},
}


@pytest.mark.parametrize("hop", list(HOPS))
async def test_a_hop_that_comes_in_while_a_close_is_written_is_refused(
    world: World, backend: str, hop: str
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    d = dispatch_of(incident, team)
    if hop in ("arrive", "position"):
        await world.http.post(f"/api/v1/dispatches/{d['id']}/accept", headers=leader.headers)
    world.clock.advance(10)
    closer = Principal(operator.id, operator.name, Role.OPERATOR, None)
    url = f"/api/v1/dispatches/{d['id']}/{hop}"
    # The close is written, not committed, when the hop comes in. On PostgreSQL the hop waits
    # for it, and it commits once the hop waits; on SQLite, one writer, the hop runs after.
    async with world.runtime.transaction() as session:
        await incidents.close_incident(session, closer, incident["id"], world.clock.now())
        request = asyncio.create_task(world.http.post(url, json=HOPS[hop], headers=leader.headers))
        if backend == "postgresql":
            await when_blocked_or_done(world, request)
    reply = await request
    assert reply.status_code == 409, reply.text
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    assert events[-1]["type"] == "closed", [e["type"] for e in events]
    closed = await world.incident(operator, incident["id"])
    assert [c["status"] for c in closed["chain"]] == ["cancelled"] * 3
    assert all(c["arrived_at"] is None for c in closed["chain"])
    assert closed["dispatches"][0]["arrived_at"] is None


async def test_a_close_that_waited_for_a_hop_come_in_after_it_is_recorded_after_that_hop(
    world: World,
) -> None:
    """On PostgreSQL a hop takes the incident's row in share, which a close waiting for
    another hop does not hold back: an arrival that came in after the close can be written
    before it. The close then comes after the arrival, and the late arrival's breach stays."""
    dsn = postgres_dsn(world)
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(59)
    hop_in_flight = await asyncpg.connect(dsn)
    try:
        async with hop_in_flight.transaction():
            await hop_in_flight.execute(
                "SELECT 1 FROM incidents WHERE id = $1 FOR SHARE", incident["id"]
            )
            close = asyncio.create_task(
                world.http.post(
                    f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
                )
            )
            await when_blocked_or_done(world, close)
            assert not close.done(), "the close waits for the hop in flight"
            world.clock.advance(2)
            url = f"/api/v1/dispatches/{dispatch_of(incident, team)['id']}/arrive"
            arrival = await world.http.post(url, headers=leader.headers)
            assert arrival.status_code == 200, arrival.text
    finally:
        await hop_in_flight.close()
    closed = (await close).json()
    assert [c["status"] for c in closed["chain"]] == ["breached", "cancelled", "cancelled"]
    assert tier(closed, 1)["elapsed_s"] == 61
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers)
    ).json()
    assert events[-1]["type"] == "closed", [e["type"] for e in events]
    assert events[-1]["data"] == {}, "no breach withdrawn"
    assert t(events[-1]["at"]) - t(incident["reported_at"]) == timedelta(seconds=61)


async def test_the_timeline_records_every_hop_with_actor(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    d = dispatch_of(incident, team)
    world.clock.advance(5)
    await world.http.post(f"/api/v1/dispatches/{d['id']}/accept", headers=leader.headers)
    world.clock.advance(5)
    await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    await world.http.post(f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers)
    reply = await world.http.get(
        f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers
    )
    events = [(e["type"], e["actor_id"]) for e in reply.json()]
    assert events == [
        ("reported", operator.id),
        ("dispatched", None),
        ("delivered", leader.id),
        ("accepted", leader.id),
        ("arrived", leader.id),
        ("met", None),
        ("closed", operator.id),
    ]


def _s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


async def test_an_arrival_that_came_by_the_deadline_meets_the_tier_the_timer_breached_meanwhile(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    d = dispatch_of(incident, team)
    world.clock.advance(61)
    await console.next_of("chain.breached")
    # The arrival's request came in half a second before the deadline and waited (for a lock
    # or a connection) while the timer breached the tier: its own time decides.
    world.clock.advance(-1.5)
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    after = reply.json()
    assert tier(after, 1)["status"] == "met"
    assert tier(after, 1)["breached_at"] is None
    assert tier(after, 1)["elapsed_s"] == 59.5
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    [met] = [e for e in events if e["type"] == "met"]
    assert met["data"] == {"tier": 1, "elapsed_s": 59.5, "breach_withdrawn": True}
    updated = await console.next_of("incident.updated")
    while tier(updated["data"], 1)["status"] != "met":
        updated = await console.next_of("incident.updated")
    await console.close()


async def test_a_close_that_came_by_the_deadline_cancels_the_tier_the_timer_breached_meanwhile(
    world: World,
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    world.clock.advance(61)
    await console.next_of("chain.breached")
    world.clock.advance(-2)
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    closed = reply.json()
    assert [c["status"] for c in closed["chain"]] == ["cancelled", "cancelled", "cancelled"]
    assert tier(closed, 1)["breached_at"] is None
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers)
    ).json()
    [close] = [e for e in events if e["type"] == "closed"]
    assert close["data"] == {"breaches_withdrawn": [1]}
    await console.close()


async def test_a_hop_is_timed_when_its_call_came_in_not_when_a_connection_was_free(
    world: World, server: RunningServer
) -> None:
    """Before the route runs, a request may wait for its body, for a connection and for its
    token's owner (read from the database when not cached): its time is taken before all."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)  # a token just issued: its owner is not cached yet
    incident = await world.report(await world.operator())
    world.clock.advance(59)
    # Every writer connection busy with other units of work (a report, a flush of acks).
    settings = world.runtime.settings
    busy = [
        world.runtime.transaction()
        for _ in range(1 if settings.is_sqlite else settings.db_pool_size)
    ]
    for unit in busy:
        await (await unit.__aenter__()).execute(text("SELECT 1"))
    before = requests_in_flight(server)
    arrival = asyncio.create_task(
        world.http.post(
            f"/api/v1/dispatches/{dispatch_of(incident, team)['id']}/arrive",
            headers=leader.headers,
        )
    )
    await call_came_in(server, before)
    assert not arrival.done(), "the call waits for a connection"
    world.clock.advance(2)
    for unit in busy:
        await unit.__aexit__(None, None, None)
    after = (await arrival).json()
    assert tier(after, 1)["status"] == "met"
    assert tier(after, 1)["elapsed_s"] == 59


async def test_a_breach_that_a_close_records_is_announced_like_the_timers(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    phone = await world.connect(leader)
    operator = await world.operator()
    incident = await world.report(operator)
    await phone.next_of("alert")
    # The close comes in after the deadline, before the timer has looked (the clock the timer
    # reads stays before it): the close records the breach, and must announce it.
    deadline = t(tier(incident, 1)["deadline"])
    closer = Principal(operator.id, operator.name, Role.OPERATOR, None)
    async with world.runtime.transaction() as session:
        closed = await incidents.close_incident(
            session, closer, incident["id"], deadline + timedelta(seconds=5)
        )
    assert [c.status for c in closed.chain] == ["breached", "cancelled", "cancelled"]
    breach = await phone.next_of("chain.breached")
    assert breach["data"]["tier"]["tier"] == 1
    assert breach["data"]["tier"]["breached_at"] == tier(incident, 1)["deadline"]
    await phone.close()


async def test_an_arrival_at_the_deadline_to_the_microsecond_meets_the_tier_the_timer_breached(
    world: World,
) -> None:
    """The timer breaches a tier the clock's least step past its deadline; an arrival whose
    call came in exactly at the deadline, then waited while the timer breached, meets it, and
    the record and the breach announced agree with that judgement."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    d = dispatch_of(incident, team)
    deadline = t(tier(incident, 1)["deadline"])
    step = timedelta(microseconds=1)
    assert world.clock.advance((deadline + step - world.clock.now()).total_seconds()) == (
        deadline + step
    )
    breach = await console.next_of("chain.breached")
    assert breach["data"]["tier"]["breached_at"] == tier(incident, 1)["deadline"]
    assert world.clock.advance(-0.000001) == deadline
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    after = reply.json()
    assert tier(after, 1)["status"] == "met"
    assert tier(after, 1)["breached_at"] is None
    assert tier(after, 1)["elapsed_s"] == 60
    stored = await world.incident(operator, incident["id"])
    assert tier(stored, 1)["status"] == "met" and tier(stored, 1)["breached_at"] is None
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    [met] = [e for e in events if e["type"] == "met"]
    assert met["data"] == {"tier": 1, "elapsed_s": 60, "breach_withdrawn": True}
    # The report judges it as the record does.
    assert await tier_one_as_reported(world, incident) == (1, 0)
    await console.close()


async def test_an_arrival_a_microsecond_past_the_deadline_before_the_timer_is_a_breach(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    d = dispatch_of(incident, team)
    # Nothing wakes the timer: the arrival alone judges, one least step past the deadline.
    world.runtime.settings.timer_poll_s = world.runtime.settings.escalation_after_s = 3600
    deadline = t(tier(incident, 1)["deadline"])
    world.clock.advance((deadline + timedelta(microseconds=1) - world.clock.now()).total_seconds())
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    assert tier(reply.json(), 1)["status"] == "breached"
    assert tier(reply.json(), 1)["breached_at"] == tier(incident, 1)["deadline"]
    assert tier(reply.json(), 1)["elapsed_s"] == 60.000001
    assert await tier_one_as_reported(world, incident) == (0, 1)


async def tier_one_as_reported(world: World, incident: dict[str, Any]) -> tuple[int, int]:
    """Tier 1's (met, breached) in the response-time report of the incident's minute."""
    reported = t(incident["reported_at"])
    period = {
        "from": reported.isoformat(),
        "to": (reported + timedelta(minutes=1, seconds=1)).isoformat(),
        "tier": 1,
    }
    auditor = await world.account("auditor")
    report = await world.http.get(
        "/api/v1/reports/response-times", params=period, headers=auditor.headers
    )
    assert report.status_code == 200, report.text
    [figures] = report.json()["totals"]
    return figures["met"], figures["breached"]
