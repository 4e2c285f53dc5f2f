"""A team dispatched without an enabled leader account (all disabled, or none) alerts nobody:
at the report, by the escalation or added by hand, its dispatch is recorded all the same, a
``nobody_alerted`` event in the incident's chain says so, the operators' board is told at once
(``nobody_alerted``), and the dispatch's view says it (``nobody_alerted``) for as long as the
incident is read, its record too. A team with a leader to alert has none of it."""

from __future__ import annotations

from typing import Any

from tests.incidents.test_added_dispatch import add, at, chain_holds
from tests.rosters.test_duty import (
    add_members,
    alerted_with,
    leader_of_unit,
    rotate_weekly,
)
from tests.support import Account, World


async def events_of(world: World, by: Account, incident_id: str, kind: str) -> list[Any]:
    found = await world.read(f"/api/v1/incidents/{incident_id}/events", by)
    return [e for e in found if e["type"] == kind]


def flags(incident: dict[str, Any]) -> dict[str, bool]:
    return {d["team_id"]: d["nobody_alerted"] for d in incident["dispatches"]}


async def disable(world: World, leader: Account) -> None:
    reply = await world.http.patch(
        f"/api/v1/users/{leader.id}",
        json={"disabled": True},
        headers=(await world.admin()).headers,
    )
    assert reply.is_success, reply.text


async def test_a_zone_dispatch_with_no_enabled_leader_tells_the_board_and_stays_on_record(
    world: World,
) -> None:
    staffed = await world.team("fixed_post")
    await world.leader(staffed)
    # Its only leader disabled: nobody to alert, as for a team with no leader at all.
    unstaffed = await world.team("patrol", *at(300, 90), radius_m=1000)
    await disable(world, await world.leader(unstaffed))
    empty = await world.team("response", *at(400, 180), radius_m=1000)
    operator = await world.operator()
    console = await world.connect(operator)

    incident = await world.report(operator)
    expected = {staffed["id"]: False, unstaffed["id"]: True, empty["id"]: True}
    assert flags(incident) == expected
    updated = await console.next()
    assert updated["type"] == "incident.updated"
    assert flags(updated["data"])[unstaffed["id"]] is True
    told = await console.next()
    assert told["type"] == "nobody_alerted"
    assert told["data"]["incident_id"] == incident["id"]
    assert told["data"]["at"] == incident["reported_at"]
    by_dispatch = {d["team_id"]: d["id"] for d in incident["dispatches"]}
    assert told["data"]["teams"] == [
        {
            "dispatch_id": by_dispatch[team["id"]],
            "team_id": team["id"],
            "team_name": team["name"],
            "tier": team["tier"],
            "reason": "no_enabled_leader",
        }
        for team in (unstaffed, empty)
    ]
    assert await console.silent()

    recorded = await events_of(world, operator, incident["id"], "nobody_alerted")
    assert [e["data"] for e in recorded] == told["data"]["teams"]
    assert {e["at"] for e in recorded} == {incident["reported_at"]}
    # A console reloaded, the list, the record: each says it of the same two dispatches.
    assert flags(await world.incident(operator, incident["id"])) == expected
    (listed,) = await world.read("/api/v1/incidents", operator, status="open")
    assert flags(listed) == expected
    record = await world.read(f"/api/v1/reports/incidents/{incident['id']}", operator)
    assert flags(record["incident"]) == expected
    assert [e["data"] for e in record["timeline"] if e["type"] == "nobody_alerted"] == [
        e["data"] for e in recorded
    ]
    # The answer to a hop carries it on: the staffed team arrives.
    leader = await world.leader(staffed)
    assert await world.arrive(incident, staffed, leader) == 200
    assert flags((await console.next_of("incident.updated"))["data"]) == expected
    assert flags(await world.incident(operator, incident["id"])) == expected
    await chain_holds(world)
    await console.close()


async def test_teams_with_a_leader_to_alert_write_no_such_event_nor_message(
    world: World,
) -> None:
    post = await world.team("fixed_post")
    patrol = await world.team("patrol", *at(300, 90), radius_m=1000)
    await world.leader(post)
    await world.leader(patrol)
    operator = await world.operator()
    console = await world.connect(operator)

    incident = await world.report(operator)
    assert flags(incident) == {post["id"]: False, patrol["id"]: False}
    assert (await console.next())["type"] == "incident.updated"
    assert await console.silent()
    assert await events_of(world, operator, incident["id"], "nobody_alerted") == []
    await console.close()


async def test_an_escalation_to_a_team_with_no_enabled_leader_tells_the_board(
    world: World,
) -> None:
    covering = await world.team("fixed_post")
    await world.leader(covering)
    # Within the ring (1000 m), outside its own zone: the escalation adds it.
    ring_team = await world.team("mobile", *at(800, 90))
    operator = await world.operator()
    incident = await world.report(operator)
    console = await world.connect(operator)

    world.clock.advance(21)
    kinds = []
    while "escalation" not in kinds:
        message = await console.next()
        kinds.append(message["type"])
        if message["type"] == "nobody_alerted":
            told = message["data"]
        if message["type"] == "escalation":
            escalation = message["data"]
    assert kinds == ["incident.updated", "nobody_alerted", "escalation"]
    (added,) = escalation["dispatches"]
    assert (added["team_id"], added["ring"], added["nobody_alerted"]) == (ring_team["id"], 1, True)
    assert told["teams"] == [
        {
            "dispatch_id": added["id"],
            "team_id": ring_team["id"],
            "team_name": ring_team["name"],
            "tier": 1,
            "reason": "no_enabled_leader",
        }
    ]
    recorded = await events_of(world, operator, incident["id"], "nobody_alerted")
    assert [e["data"] for e in recorded] == told["teams"]
    assert flags(await world.incident(operator, incident["id"])) == {
        covering["id"]: False,
        ring_team["id"]: True,
    }
    await chain_holds(world)
    await console.close()


async def test_adding_by_hand_a_rotating_team_whose_unit_on_turn_has_no_enabled_leader(
    world: World,
) -> None:
    """加派 of a mobile team whose units take turns. Its unit on turn's leader disabled, its
    off-turn leader is alerted (as every alert falls back to all leaders when none serves with
    the unit on turn): somebody has the alert. With that leader disabled too, nobody: the answer
    says ``no_active_leader``, the event and the board say it."""
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    incident = await world.report(operator)
    console = await world.connect(operator)

    def rotating(phones: str) -> Any:
        async def made() -> tuple[dict[str, Any], Account, Account]:
            mobile = await world.team("mobile", *at(3000, 90))
            await add_members(world, mobile, 1, 2)
            await add_members(world, mobile, 2, 2)
            on_turn = await leader_of_unit(world, mobile, phones + "1", 1)
            off_turn = await leader_of_unit(world, mobile, phones + "2", 2)
            await rotate_weekly(world, mobile, [1, 2])
            return mobile, on_turn, off_turn

        return made()

    fallback, gone, off_turn = await rotating("1380009100")
    await disable(world, gone)
    phone = await world.connect(off_turn)
    reply = await add(world, operator, incident["id"], fallback["id"])
    assert reply.status_code == 201, reply.text
    assert reply.json()["no_active_leader"] is False
    await alerted_with(phone, incident)
    assert flags(reply.json())[fallback["id"]] is False
    assert [
        e["data"]["team_id"]
        for e in await events_of(world, operator, incident["id"], "all_leaders_alerted")
    ] == [fallback["id"]]
    await phone.close()

    nobody, first, second = await rotating("1380009200")
    await disable(world, first)
    await disable(world, second)
    reply = await add(world, operator, incident["id"], nobody["id"])
    assert reply.status_code == 201, reply.text
    assert reply.json()["no_active_leader"] is True
    assert flags(reply.json())[nobody["id"]] is True
    added = next(d for d in reply.json()["dispatches"] if d["team_id"] == nobody["id"])
    told = await console.next_of("nobody_alerted")
    assert [t["dispatch_id"] for t in told["data"]["teams"]] == [added["id"]]
    recorded = await events_of(world, operator, incident["id"], "nobody_alerted")
    assert [(e["data"]["team_id"], e["data"]["reason"]) for e in recorded] == [
        (nobody["id"], "no_enabled_leader")
    ]
    await chain_holds(world)
    await console.close()


async def test_the_boards_news_of_a_hop_says_it_of_a_team_that_was_alerted_to_nobody(
    world: World,
) -> None:
    """A leader account given to the team after its dispatch opens the incident and his screen
    shows it: the board's ``dispatches.updated`` of that hop says the dispatch as it is on
    record, its alert having reached nobody, as a reload would, and not the contrary."""
    team = await world.team("mobile")
    operator = await world.operator()
    incident = await world.report(operator)
    (dispatch,) = incident["dispatches"]
    assert dispatch["nobody_alerted"] is True
    console = await world.connect(operator)
    late = await world.leader(team)

    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch['id']}/shown", headers=late.headers
    )
    assert reply.status_code == 200, reply.text
    news = await console.next_of("dispatches.updated")
    assert [(d["id"], d["nobody_alerted"]) for d in news["data"]["dispatches"]] == [
        (dispatch["id"], True)
    ]
    assert flags(await world.incident(operator, incident["id"])) == {team["id"]: True}
    await console.close()
