"""What a hop locks and reads: a position fix that records nothing holds no lock, one that
arrives decides again once locked, and a leader's accept reads the followers with the
dispatch."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pyproj import Geod
from sqlalchemy import select

from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.incidents import service
from dispatch.incidents.models import Dispatch, DispatchFollower
from dispatch.schemas import LocationIn
from tests.rosters.races import postgres_dsn, racing_a_writer, when_blocked_or_done
from tests.rosters.test_duty import add_members, book_of, leader_of_unit, rotate_weekly
from tests.support import QINGXI, Account, World, statements_sent

GEOD = Geod(ellps="WGS84")
GEOFENCE = (50.0, 30.0)


def towards_incident(metres: float) -> dict[str, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, 120.0, metres)
    return {"lon": float(lon), "lat": float(lat)}


async def accepted(world: World) -> tuple[Account, dict[str, Any], str]:
    leader = await world.leader(await world.team("mobile"))
    incident = await world.report(await world.operator())
    dispatch_id = incident["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    return leader, incident, dispatch_id


def principal(account: Account) -> auth.Principal:
    return auth.Principal(account.id, account.name, Role(account.role), account.team_id)


def locking(statements: list[str]) -> list[str]:
    return [s for s in statements if " FOR UPDATE" in s or " FOR NO KEY" in s or " FOR SHARE" in s]


async def test_a_fix_that_records_nothing_holds_no_lock_an_arrival_waits_for(
    world: World,
) -> None:
    postgres_dsn(world)  # SQLite queues writers whatever they lock: nothing to see there
    leader, incident, dispatch_id = await accepted(world)
    # On scene, but too inaccurate to stand for the team's arrival.
    vague = service.Fix(LocationIn(**towards_incident(5.0)), accuracy_m=200.0)
    async with world.runtime.sessionmaker() as fixing, fixing.begin():
        with statements_sent(world.runtime) as sent:
            _, view = await service.record_position(
                fixing, principal(leader), dispatch_id, vague, world.clock.now(), GEOFENCE
            )
        assert view is None
        # One statement reads the dispatch with its incident, and locks nothing.
        assert len(sent) == 1 and locking(sent) == []
        # The fix's transaction is still open: the leader's tap is recorded all the same.
        arrive = asyncio.create_task(
            world.http.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers)
        )
        await when_blocked_or_done(world, arrive)
        assert arrive.done(), "the arrival waited for the position fix's transaction"
        reply = await arrive
        assert reply.status_code == 200, reply.text
        (d,) = reply.json()["dispatches"]
        assert d["arrival_source"] == "button"
    assert (await world.incident(leader, incident["id"]))["chain"][0]["status"] == "met"


async def test_a_fix_on_scene_yields_to_an_arrival_committed_while_it_waited_for_the_lock(
    world: World,
) -> None:
    """The fix decides to arrive on rows read unlocked; an arrival by button that commits
    before the fix gets the dispatch's lock stays the arrival, and the fix records none."""
    postgres_dsn(world)  # step by step on PostgreSQL; SQLite runs one writer at a time
    leader, incident, dispatch_id = await accepted(world)
    pressed = world.clock.now() + timedelta(seconds=1)
    world.clock.advance(2)
    fix = {"location": towards_incident(5.0), "accuracy_m": 5}

    async def send() -> Any:
        return await world.http.post(
            f"/api/v1/dispatches/{dispatch_id}/position", json=fix, headers=leader.headers
        )

    reply = await racing_a_writer(
        world,
        send,
        "UPDATE dispatches SET arrived_at = $1, arrival_source = 'button' WHERE id = $2",
        pressed,
        dispatch_id,
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["arrived"], reply.json()["incident"]) == (False, None)
    operator = await world.operator()
    (d,) = (await world.incident(operator, incident["id"]))["dispatches"]
    assert (d["arrival_source"], d["arrival_accuracy_m"]) == ("button", None)
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers)
    ).json()
    assert [e for e in events if e["type"] == "arrived"] == []


async def test_a_fix_on_scene_locks_and_records_the_arrival(world: World) -> None:
    leader, _, dispatch_id = await accepted(world)
    fix = {"location": towards_incident(5.0), "accuracy_m": 5}
    with statements_sent(world.runtime) as sent:
        reply = await world.http.post(
            f"/api/v1/dispatches/{dispatch_id}/position", json=fix, headers=leader.headers
        )
    assert reply.json()["arrived"] is True
    # Read twice: unlocked to decide, then locked (on PostgreSQL) to write.
    reads = [s for s in sent if s.startswith("SELECT dispatches.id")]
    assert len(reads) >= 2
    if world.runtime.settings.database_url.startswith("postgresql"):
        assert " FOR " not in reads[0] and " FOR NO KEY UPDATE" in reads[1]
    again = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/position", json=fix, headers=leader.headers
    )
    assert again.json()["arrived"] is False
    async with world.runtime.sessionmaker() as session:
        d = await session.scalar(select(Dispatch).where(Dispatch.id == dispatch_id))
        assert d is not None and d.arrival_source == "geofence"


async def test_a_leaders_accept_reads_the_followers_with_the_dispatch(world: World) -> None:
    """Only the dispatches of teams whose units take turns have followers; reading them took a
    round trip of its own at every accept and arrival, of every team."""
    world.long_logins()
    _, incident, dispatch_id = await accepted(world)
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 2)
    await add_members(world, mobile, 2, 2)
    on_turn = await leader_of_unit(world, mobile, "13800001001", 1)
    off_turn = await leader_of_unit(world, mobile, "13800001002", 2)
    await rotate_weekly(world, mobile, [1, 2])
    await book_of(world)
    rotating = await world.report(await world.operator())
    (rotating_id,) = [d["id"] for d in rotating["dispatches"] if d["team_id"] == mobile["id"]]

    for leader, hop in [(on_turn, "accept"), (off_turn, "accept"), (off_turn, "arrive")]:
        with statements_sent(world.runtime) as sent:
            reply = await world.http.post(
                f"/api/v1/dispatches/{rotating_id}/{hop}", headers=leader.headers
            )
        assert reply.status_code == 200, reply.text
        assert not [s for s in sent if s.startswith("SELECT dispatch_followers")]
    operator = await world.operator()
    events = (
        await world.http.get(f"/api/v1/incidents/{rotating['id']}/events", headers=operator.headers)
    ).json()
    hops = {e["type"]: e for e in events if e["data"].get("dispatch_id") == rotating_id}
    assert "off_turn" not in hops["accepted"]["data"], "the leader on turn accepted first"
    assert hops["arrived"]["data"]["off_turn"] is True
    # The off-turn leader took the dispatch on: he follows it now, as the leader on turn does.
    assert await followers(world, rotating_id) == {on_turn.id: True, off_turn.id: False}
    # The team that does not take turns: every leader follows, none is kept.
    assert await followers(world, dispatch_id) == {}
    assert incident["id"] != rotating["id"]


async def followers(world: World, dispatch_id: str) -> dict[str, bool]:
    async with world.runtime.sessionmaker() as session:
        rows = await session.execute(
            select(DispatchFollower.user_id, DispatchFollower.alerted).where(
                DispatchFollower.dispatch_id == dispatch_id
            )
        )
        return {user_id: alerted for user_id, alerted in rows.all()}
