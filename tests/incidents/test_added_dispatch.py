"""加派: an operator adds a team by hand to an open incident. It is alerted as any dispatched
team, its dispatch says an operator added it, the timeline records who, when and why, and a
team added after its tier's deadline leaves that tier's judgement as it was."""

from __future__ import annotations

from typing import Any

from pyproj import Geod

from dispatch.audit import chain as event_chain
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.errors import Conflict, NotFound
from dispatch.incidents import service as incidents
from tests.rosters.races import racing_a_writer
from tests.rosters.test_duty import advance_to, put_duty
from tests.support import QINGXI, Account, World

GEOD = Geod(ellps="WGS84")


def at(metres: float, azimuth: float = 0.0) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return float(lon), float(lat)


async def add(
    world: World, by: Account, incident_id: str, team_id: str, note: str | None = None
) -> Any:
    body: dict[str, Any] = {"team_id": team_id}
    if note is not None:
        body["note"] = note
    return await world.http.post(
        f"/api/v1/incidents/{incident_id}/dispatches", json=body, headers=by.headers
    )


async def events(world: World, by: Account, incident_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await world.read(f"/api/v1/incidents/{incident_id}/events", by)
    return found


async def chain_holds(world: World) -> None:
    async with world.runtime.sessionmaker() as session:
        verdict = await event_chain.verify(session)
    assert verdict.broken is None, verdict.broken


async def test_an_operator_adds_a_team_outside_the_zone_and_its_leader_is_alerted(
    world: World,
) -> None:
    covering = await world.team("fixed_post")
    # Tier 2, its zone far from the point.
    outside = await world.team("patrol", *at(3000, 90), radius_m=1000)
    leader = await world.leader(outside)
    operator = await world.operator()
    incident = await world.report(operator)
    assert [d["team_id"] for d in incident["dispatches"]] == [covering["id"]]
    assert incident["dispatches"][0]["added_by"] == "zone"
    console = await world.connect(operator)
    phone = await world.connect(leader)

    reply = await add(world, operator, incident["id"], outside["id"], "报警人要求巡逻车到场")
    assert reply.status_code == 201, reply.text
    added = next(d for d in reply.json()["dispatches"] if d["team_id"] == outside["id"])
    assert (added["tier"], added["ring"], added["added_by"]) == (2, 2, "operator")
    assert abs(added["distance_m"] - 3000) < 0.01

    alert = await phone.next_of("alert")
    assert alert["data"]["dispatch"]["id"] == added["id"]
    assert alert["data"]["dispatch"]["added_by"] == "operator"
    board = await console.next_of("incident.updated")
    assert outside["id"] in {d["team_id"] for d in board["data"]["dispatches"]}

    timeline = await events(world, operator, incident["id"])
    kinds = [e["type"] for e in timeline]
    assert kinds[-2:] == ["team_added", "dispatched"]
    team_added = timeline[-2]
    assert team_added["actor_id"] == operator.id
    assert team_added["data"] == {
        "dispatch_id": added["id"],
        "team_id": outside["id"],
        "team_name": outside["name"],
        "tier": 2,
        "note": "报警人要求巡逻车到场",
    }
    tiers = {t["tier"]: t for t in (await world.incident(operator, incident["id"]))["chain"]}
    assert tiers[2]["covered"], "added by its deadline, the team covers its tier"

    # The added team's hops are recorded as any team's: its arrival meets tier 2.
    reply = await world.http.post(
        f"/api/v1/dispatches/{added['id']}/accept", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    reply = await world.http.post(
        f"/api/v1/dispatches/{added['id']}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    tiers = {t["tier"]: t for t in (await world.incident(operator, incident["id"]))["chain"]}
    assert tiers[2]["status"] == "met"
    # The leader now reads the incident as his team's.
    assert (await world.incident(leader, incident["id"]))["id"] == incident["id"]
    await chain_holds(world)
    await console.close()
    await phone.close()


async def test_adding_a_team_is_refused_with_the_field_that_stops_it(world: World) -> None:
    world.long_logins()  # the clock jumps to an hour of the day
    covering = await world.team("fixed_post")
    other = await world.team("response", *at(2000, 0), radius_m=1000)
    night = await world.team("mobile", *at(900, 180))
    operator = await world.operator()
    leader = await world.leader(covering)
    today = world.clock.now().date().isoformat()
    reply = await put_duty(
        world, night, start="20:00", end="08:00", rotation_start=today, units=[1]
    )
    assert reply.status_code == 200, reply.text
    advance_to(world, 12)
    operator, leader = await world.relogin(operator), await world.relogin(leader)
    incident = await world.report(operator)

    def field(reply: Any) -> str:
        found: str = reply.json()["field"]
        return found

    reply = await add(world, leader, incident["id"], other["id"])
    assert reply.status_code == 403, reply.text
    reply = await add(world, operator, incident["id"], "no-such-team")
    assert (reply.status_code, field(reply)) == (404, "team_id"), reply.text
    reply = await add(world, operator, "no-such-incident", other["id"])
    assert (reply.status_code, field(reply)) == (404, "incident_id"), reply.text
    reply = await add(world, operator, incident["id"], covering["id"])
    assert (reply.status_code, field(reply)) == (409, "team_id"), reply.text
    assert "already dispatched" in reply.json()["detail"]
    reply = await add(world, operator, incident["id"], night["id"])
    assert (reply.status_code, field(reply)) == (409, "team_id"), reply.text
    assert "off duty" in reply.json()["detail"]
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/dispatches", json={}, headers=operator.headers
    )
    assert reply.status_code == 422 and "team_id" in reply.text, reply.text
    reply = await add(world, operator, incident["id"], other["id"], "x" * 501)
    assert reply.status_code == 422 and "note" in reply.text, reply.text
    retired = await world.team("patrol", *at(1500, 45), radius_m=1000)
    admin = await world.admin()
    reply = await world.http.delete(f"/api/v1/teams/{retired['id']}", headers=admin.headers)
    assert reply.status_code in (200, 204), reply.text
    reply = await add(world, operator, incident["id"], retired["id"])
    assert (reply.status_code, field(reply)) == (404, "team_id"), reply.text

    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text
    reply = await add(world, operator, incident["id"], other["id"])
    assert (reply.status_code, field(reply)) == (409, "incident_id"), reply.text
    assert "closed" in reply.json()["detail"]
    after = await world.incident(operator, incident["id"])
    assert [d["team_id"] for d in after["dispatches"]] == [covering["id"]]
    assert "team_added" not in [e["type"] for e in await events(world, operator, incident["id"])]


async def test_a_team_added_after_its_tiers_deadline_leaves_the_tier_as_it_was(
    world: World,
) -> None:
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(4000, 270), radius_m=1000)
    operator = await world.operator()
    incident = await world.report(operator)
    tier_two = next(t for t in incident["chain"] if t["tier"] == 2)
    assert not tier_two["covered"]
    world.clock.advance(tier_two["target_s"] + 1)

    reply = await add(world, operator, incident["id"], patrol["id"])
    assert reply.status_code == 201, reply.text
    view = reply.json()
    tiers = {t["tier"]: t for t in view["chain"]}
    assert not tiers[2]["covered"], "added after tier 2's deadline: still nobody could come"
    added = next(d for d in view["dispatches"] if d["team_id"] == patrol["id"])
    assert (added["tier"], added["added_by"]) == (2, "operator")
    await chain_holds(world)


async def test_the_service_adds_a_team_in_one_unit_of_work(world: World) -> None:
    await world.team("fixed_post")
    response = await world.team("response", *at(2500, 30), radius_m=1000)
    operator = await world.operator()
    incident = await world.report(operator)
    actor = auth.Principal(operator.id, operator.name, Role.OPERATOR, None)

    async with world.runtime.transaction() as session:
        view = await incidents.add_dispatch(
            session, actor, incident["id"], response["id"], None, world.clock.now()
        )
    added = next(d for d in view.dispatches if d.team_id == response["id"])
    assert (added.tier, added.ring, added.added_by) == (3, incidents.RING_OPERATOR, "operator")

    for team_id, refused in ((response["id"], Conflict), ("nobody", NotFound)):
        try:
            async with world.runtime.transaction() as session:
                await incidents.add_dispatch(
                    session, actor, incident["id"], team_id, None, world.clock.now()
                )
        except refused as error:
            assert error.field == "team_id"
        else:
            raise AssertionError(f"{team_id} was added again")
    after = await world.incident(operator, incident["id"])
    assert [d["team_id"] for d in after["dispatches"]].count(response["id"]) == 1
    await chain_holds(world)


async def test_a_team_retired_while_it_is_added_is_not_added(world: World) -> None:
    """Retirement and 加派 take turns on the team's row: the add waits for a retirement under
    way, then finds the team out of service (before, it read the team as still serving and
    dispatched a retired team)."""
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(2000, 90), radius_m=1000)
    operator = await world.operator()
    incident = await world.report(operator)

    reply = await racing_a_writer(
        world,
        lambda: add(world, operator, incident["id"], patrol["id"]),
        "UPDATE teams SET retired_at = now() WHERE id = $1",
        patrol["id"],
    )
    assert (reply.status_code, reply.json()["field"]) == (404, "team_id"), reply.text
    after = await world.incident(operator, incident["id"])
    assert patrol["id"] not in [d["team_id"] for d in after["dispatches"]]


async def test_adding_a_team_without_an_enabled_leader_says_nobody_got_its_alert(
    world: World,
) -> None:
    """A team whose leaders are all disabled, or that has none, is added (the operator may
    radio it, and it is on record) and the answer says its alert reached nobody; a team with
    a leader says it has one."""
    await world.team("fixed_post")
    disabled_only = await world.team("patrol", *at(2000, 90), radius_m=1000)
    leaderless = await world.team("response", *at(2500, 180), radius_m=1000)
    staffed = await world.team("patrol", *at(3000, 270), radius_m=1000)
    gone = await world.leader(disabled_only)
    await world.leader(staffed)
    admin = await world.admin()
    reply = await world.http.patch(
        f"/api/v1/users/{gone.id}", json={"disabled": True}, headers=admin.headers
    )
    assert reply.is_success, reply.text
    operator = await world.operator()
    incident = await world.report(operator)

    for team, alone in ((disabled_only, True), (leaderless, True), (staffed, False)):
        reply = await add(world, operator, incident["id"], team["id"])
        assert reply.status_code == 201, reply.text
        assert reply.json()["no_active_leader"] is alone, team["name"]
        assert team["id"] in [d["team_id"] for d in reply.json()["dispatches"]]
    await chain_holds(world)
