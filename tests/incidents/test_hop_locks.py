"""What a hop locks and reads: a leader's accept reads the followers with the dispatch."""

from __future__ import annotations

from typing import Any

from pyproj import Geod
from sqlalchemy import select

from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.incidents.models import DispatchFollower
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


async def test_a_leaders_accept_reads_the_followers_with_the_dispatch(world: World) -> None:
    """Only the dispatches of teams whose units take turns have followers; reading them took a
    round trip of its own at every accept and arrival, of every team."""
    world.runtime.settings.token_ttl_s = 30 * 86400
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
