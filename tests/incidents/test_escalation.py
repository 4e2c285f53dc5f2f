"""Escalation: when tier 1 does not accept in time, or no tier-1 zone covers, the wider ring."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from pyproj import Geod
from sqlalchemy import select

from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job
from tests.conftest import RunningServer
from tests.support import QINGXI, World

GEOD = Geod(ellps="WGS84")


def at(metres: float, azimuth: float = 0.0) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return float(lon), float(lat)


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def events(world: World, by: Any, incident_id: str) -> list[dict[str, Any]]:
    reply = await world.http.get(f"/api/v1/incidents/{incident_id}/events", headers=by.headers)
    found: list[dict[str, Any]] = reply.json()
    return found


async def escalation_outcome(world: World, incident_id: str) -> str:
    for _ in range(250):
        async with world.runtime.sessionmaker() as session:
            job = await session.scalar(select(Job).where(Job.incident_id == incident_id))
        if job is not None and job.status == "done":
            return str(job.outcome)
        await asyncio.sleep(0.02)
    raise AssertionError("the escalation step never fired")


async def test_unaccepted_tier_one_escalates_to_the_wider_ring(world: World) -> None:
    covering = await world.team("fixed_post")
    ring_team = await world.team("mobile", *at(800, 90))  # 500 m zone: does not cover
    beyond = await world.team("fixed_post", *at(1200, 180))
    ring_leader = await world.leader(ring_team)
    operator = await world.operator()
    console = await world.connect(operator)
    ring_phone = await world.connect(ring_leader)
    incident = await world.report(operator)
    assert [d["team_id"] for d in incident["dispatches"]] == [covering["id"]]

    world.clock.advance(21)
    escalation = await console.next_of("escalation")
    data = escalation["data"]
    assert data["incident_id"] == incident["id"]
    assert data["ring_m"] == 1000
    assert [d["team_id"] for d in data["dispatches"]] == [ring_team["id"]]
    assert data["dispatches"][0]["ring"] == 1
    assert abs(data["dispatches"][0]["distance_m"] - 800) < 0.01
    alert = await ring_phone.next_of("alert")
    assert alert["data"]["dispatch"]["team_id"] == ring_team["id"]

    after = await world.incident(operator, incident["id"])
    assert {d["team_id"] for d in after["dispatches"]} == {covering["id"], ring_team["id"]}
    assert beyond["id"] not in {d["team_id"] for d in after["dispatches"]}
    escalated = [
        e for e in await events(world, operator, incident["id"]) if e["type"] == "escalated"
    ]
    assert len(escalated) == 1
    assert t(escalated[0]["at"]) - t(incident["reported_at"]) == timedelta(seconds=20)
    await console.close()
    await ring_phone.close()


async def test_an_escalation_retried_after_a_failure_keeps_its_due_time(world: World) -> None:
    """A step that failed is tried again later (``postpone``, as the job queue leaves it):
    the escalation is still of the 20 s after the report, not of the retry's moment."""
    await world.team("fixed_post")
    await world.team("mobile", *at(800, 90))
    operator = await world.operator()
    incident = await world.report(operator)
    retry_at = t(incident["reported_at"]) + timedelta(seconds=26)
    async with world.runtime.transaction() as session:
        job = await session.scalar(select(Job).where(Job.incident_id == incident["id"]))
        assert job is not None
        await jobs.postpone(session, job.id, retry_at, "failed: a passing database error")

    world.clock.advance(27)
    assert (await escalation_outcome(world, incident["id"])).startswith("escalated")
    [escalated] = [
        e for e in await events(world, operator, incident["id"]) if e["type"] == "escalated"
    ]
    assert t(escalated["at"]) - t(incident["reported_at"]) == timedelta(seconds=20)
    assert escalated["data"]["reason"] == "no tier-1 team accepted within 20 s"
    assert t(escalated["data"]["fired_at"]) - t(incident["reported_at"]) == timedelta(seconds=27)


async def test_accepting_in_time_means_no_escalation(world: World) -> None:
    covering = await world.team("fixed_post")
    await world.team("mobile", *at(800, 90))
    leader = await world.leader(covering)
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(10)
    d = incident["dispatches"][0]
    await world.http.post(f"/api/v1/dispatches/{d['id']}/accept", headers=leader.headers)
    world.clock.advance(30)
    assert await escalation_outcome(world, incident["id"]) == "not needed: a tier-1 team accepted"
    after = await world.incident(operator, incident["id"])
    assert len(after["dispatches"]) == 1
    assert "escalated" not in [e["type"] for e in await events(world, operator, incident["id"])]


async def test_an_arrival_recorded_by_radio_in_time_means_no_escalation(world: World) -> None:
    """The team is on scene although its phone never accepted: nobody else is needed."""
    covering = await world.team("fixed_post")
    await world.team("mobile", *at(800, 90))
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(15)
    d = incident["dispatches"][0]
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=operator.headers)
    assert reply.status_code == 200 and reply.json()["dispatches"][0]["accepted_at"] is None
    world.clock.advance(10)
    assert await escalation_outcome(world, incident["id"]) == "not needed: a tier-1 team arrived"
    after = await world.incident(operator, incident["id"])
    assert [x["team_id"] for x in after["dispatches"]] == [covering["id"]]


async def test_no_tier_one_cover_escalates_at_once(world: World) -> None:
    ring_team = await world.team("fixed_post", *at(600, 45))
    await world.team("patrol", radius_m=3000)
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    ring = [d for d in incident["dispatches"] if d["ring"] == 1]
    assert [d["team_id"] for d in ring] == [ring_team["id"]]
    assert incident["chain"][0]["covered"] is True
    escalation = await console.next_of("escalation")
    assert escalation["data"]["reason"] == "no tier-1 zone covers the incident"
    await console.close()


async def test_an_escalation_due_while_down_fires_on_start_at_its_due_time(
    server: RunningServer, world: World
) -> None:
    await world.team("fixed_post")
    ring_team = await world.team("mobile", *at(900, 270))
    operator = await world.operator()
    incident = await world.report(operator)
    await server.stop()
    server.clock.advance(45)
    restarted = RunningServer(server.settings, server.clock)
    await restarted.start()
    try:
        again = World(restarted.app, f"http://127.0.0.1:{restarted.port}", server.clock)
        after = await again.wait_for(operator, incident["id"], lambda i: len(i["dispatches"]) == 2)
        assert after["dispatches"][1]["team_id"] == ring_team["id"]
        escalated = [
            e for e in await events(again, operator, incident["id"]) if e["type"] == "escalated"
        ]
        assert [t(e["at"]) - t(incident["reported_at"]) for e in escalated] == [
            timedelta(seconds=20)
        ]
        await again.close()
    finally:
        await restarted.stop()


async def test_the_ring_alerted_on_start_hears_of_the_tier_one_breach_due_after_its_step(
    server: RunningServer, world: World
) -> None:
    """Down across both the escalation step (20 s) and tier 1's deadline (60 s): on start they
    fire in that order, as they would have live. The timer breached first, so the ring's
    leaders, alerted after it, were never sent the breach, and the record had the step after
    the breach it came before."""
    await world.team("fixed_post")
    ring_team = await world.team("mobile", *at(900, 270))
    ring_leader = await world.leader(ring_team)
    operator = await world.operator()
    incident = await world.report(operator)
    await server.stop()
    server.clock.advance(65)
    restarted = RunningServer(server.settings, server.clock)
    await restarted.start()
    try:
        again = World(restarted.app, f"http://127.0.0.1:{restarted.port}", server.clock)
        await again.wait_for(
            operator,
            incident["id"],
            lambda i: len(i["dispatches"]) == 2 and i["chain"][0]["status"] == "breached",
        )
        phone = await again.connect(ring_leader)
        assert (await phone.next_of("alert"))["data"]["dispatch"]["team_id"] == ring_team["id"]
        breach = await phone.next_of("chain.breached")
        assert breach["data"]["tier"]["tier"] == 1
        await phone.close()
        kinds = [
            (e["type"], e["data"].get("tier"))
            for e in await events(again, operator, incident["id"])
            if e["type"] in ("escalated", "breached")
        ]
        assert kinds == [("escalated", None), ("breached", 1)]
        await again.close()
    finally:
        await restarted.stop()


async def test_the_escalation_message_says_when_it_was_due_also_to_a_console_come_back_later(
    world: World,
) -> None:
    """A console whose line dropped hears the escalation in the replay, later than it happened:
    the message says when (the escalated event's time, the step's due time, not the moment the
    console hears of it), as a breach says its deadline; at the report for no tier-1 cover."""
    await world.team("fixed_post")
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    await console.next_of("incident.updated")
    mark = console.last_seq
    await console.close()

    world.clock.advance(25)
    await escalation_outcome(world, incident["id"])
    world.clock.advance(10)
    back = await world.connect(operator, resume_from=mark)
    escalation = await back.next_of("escalation")
    escalated = [
        e for e in await events(world, operator, incident["id"]) if e["type"] == "escalated"
    ]
    assert escalation["data"]["at"] == escalated[0]["at"]
    assert t(escalation["data"]["at"]) - t(incident["reported_at"]) == timedelta(seconds=20)
    await back.close()

    uncovered = await world.report(operator, *at(3000, 0))
    live = await world.connect(operator, resume_from=mark)
    while True:
        message = await live.next_of("escalation")
        if message["data"]["incident_id"] == uncovered["id"]:
            break
    assert message["data"]["at"] == uncovered["reported_at"]
    await live.close()
