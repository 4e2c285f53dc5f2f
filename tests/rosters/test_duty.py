"""Duty hours and rotation: an off-duty mobile team is not alerted, and the incident says why;
a team whose units take turns alerts the leaders serving with the unit on turn."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pyproj import Geod
from sqlalchemy import select

from dispatch.jobs.models import Job
from dispatch.rosters.book import Duties, DutyBook
from dispatch.rosters.duty import OnTurn, Rotation, duty_state, leaders_on_turn, shift_date
from dispatch.rosters.service import load_duties
from dispatch.schemas import DISPLAY_TZ
from tests.support import QINGXI, Account, Socket, World, statements_sent

GEOD = Geod(ellps="WGS84")


def near(metres: float, azimuth: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return float(lon), float(lat)


def local(world: World) -> datetime:
    return world.clock.now().astimezone(DISPLAY_TZ)


def advance_to(world: World, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Move the clock forward to the next local (Asia/Shanghai) time of day given."""
    now = local(world)
    target = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    world.clock.advance((target - now).total_seconds())
    return target


NIGHT = Rotation(20 * 60, 8 * 60, 1, date(2026, 1, 5), (1, 2, 3))


@pytest.mark.parametrize(
    ("at", "shift"),
    [
        ("2026-01-05T19:59:59.999+08:00", None),
        ("2026-01-05T20:00:00+08:00", date(2026, 1, 5)),
        ("2026-01-06T07:59:59.999+08:00", date(2026, 1, 5)),
        ("2026-01-06T08:00:00+08:00", None),
        ("2026-01-05T12:00:00Z", date(2026, 1, 5)),  # 20:00 in Shanghai
    ],
)
def test_a_night_shift_belongs_to_the_day_it_began(at: str, shift: date | None) -> None:
    assert shift_date(NIGHT, datetime.fromisoformat(at)) == shift


def test_units_take_turns_by_the_week_of_the_shift() -> None:
    sizes = {1: 4, 2: 4, 3: 4}
    # Sunday night 11 January belongs to the first week; Monday 12th starts unit 2's turn.
    sunday_night = datetime.fromisoformat("2026-01-12T02:00:00+08:00")
    assert duty_state(NIGHT, sizes, sunday_night).unit == 1
    assert duty_state(NIGHT, sizes, datetime.fromisoformat("2026-01-12T21:00:00+08:00")).unit == 2
    assert duty_state(NIGHT, sizes, datetime.fromisoformat("2026-01-26T21:00:00+08:00")).unit == 1
    fortnight = Rotation(20 * 60, 8 * 60, 2, date(2026, 1, 5), (1, 2, 3))
    assert (
        duty_state(fortnight, sizes, datetime.fromisoformat("2026-01-12T21:00:00+08:00")).unit == 1
    )
    assert (
        duty_state(fortnight, sizes, datetime.fromisoformat("2026-01-19T21:00:00+08:00")).unit == 2
    )
    # Before the rotation's first day the cycle runs backwards the same way.
    assert duty_state(NIGHT, sizes, datetime.fromisoformat("2025-12-29T21:00:00+08:00")).unit == 3
    empty = duty_state(NIGHT, {1: 4, 3: 4}, datetime.fromisoformat("2026-01-12T21:00:00+08:00"))
    assert (empty.on_duty, empty.reason, empty.unit) == (False, "unit_empty", 2)
    all_day = Rotation(8 * 60, 8 * 60, 1, date(2026, 1, 5), ())
    assert duty_state(all_day, {}, datetime.fromisoformat("2026-01-06T07:59:00+08:00")).on_duty


async def put_duty(world: World, team: dict[str, Any], **body: Any) -> Any:
    admin = await world.admin()
    return await world.http.put(
        f"/api/v1/rosters/duty/{team['id']}", json=body, headers=admin.headers
    )


async def add_members(world: World, team: dict[str, Any], unit: int, count: int) -> None:
    admin = await world.admin()
    for i in range(count):
        reply = await world.http.post(
            "/api/v1/rosters/members",
            json={
                "kind": "emergency",
                "group_name": team["name"],
                "name": f"队员{unit}-{i}",
                "phone": f"1390000{unit:02d}{i:02d}",
                "role": "auxiliary_police_driver" if i % 2 == 0 else "guard",
                "unit": unit,
            },
            headers=admin.headers,
        )
        assert reply.status_code == 201, reply.text


async def escalated(world: World, by: Account, incident_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        reply = await world.http.get(f"/api/v1/incidents/{incident_id}/events", headers=by.headers)
        if any(e["type"] == "escalated" for e in reply.json()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the escalation never fired")


def team_ids(incident: dict[str, Any]) -> set[str]:
    return {d["team_id"] for d in incident["dispatches"]}


async def test_off_duty_mobile_team_is_skipped_with_its_reason(world: World) -> None:
    world.long_logins()  # the clock jumps days ahead
    fixed = await world.team("fixed_post")
    mobile = await world.team("mobile", *near(300, 90))
    await add_members(world, mobile, 1, 4)
    operator = await world.operator()
    leader = await world.leader(mobile)
    phone = await world.connect(leader)

    today = local(world).date()
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start=today.isoformat(), units=[1]
    )
    assert reply.status_code == 200, reply.text

    advance_to(world, 12)
    midday = await world.report(operator)
    assert team_ids(midday) == {fixed["id"]}
    assert len(midday["skipped"]) == 1
    skip = midday["skipped"][0]
    assert (skip["team_id"], skip["team_name"], skip["tier"], skip["reason"]) == (
        mobile["id"],
        mobile["name"],
        1,
        "off_hours",
    )
    assert "20:00-08:00" in skip["detail"]
    assert (await world.incident(operator, midday["id"]))["skipped"] == midday["skipped"]
    events = (
        await world.http.get(f"/api/v1/incidents/{midday['id']}/events", headers=operator.headers)
    ).json()
    assert [e["data"]["team_id"] for e in events if e["type"] == "skipped"] == [mobile["id"]]
    # Nobody accepts: 20 s later the escalation alerts the 1 km ring, still without the team.
    world.clock.advance(21)
    await escalated(world, operator, midday["id"])
    assert mobile["id"] not in team_ids(await world.incident(operator, midday["id"]))
    assert await phone.silent(0.3), "an off-duty team's leader gets no alert"

    # Only the mobile team's zone covers this point. With it skipped no tier-1 zone covers, so
    # the 1 km ring is alerted at once: the fixed post comes, the off-duty team still does not.
    lonely = await world.report(operator, *near(600, 90))
    assert [s["team_id"] for s in lonely["skipped"]] == [mobile["id"]]
    assert team_ids(lonely) == {fixed["id"]}
    await escalated(world, operator, lonely["id"])

    advance_to(world, 20)  # exactly the start of the duty hours
    evening = await world.report(operator)
    assert team_ids(evening) == {fixed["id"], mobile["id"]} and evening["skipped"] == []
    alert = await phone.next_of("alert")
    assert alert["data"]["incident"]["id"] == evening["id"]

    advance_to(world, 7, 59, 59)
    assert mobile["id"] in team_ids(await world.report(operator))
    world.clock.advance(1)  # 08:00:00: the shift is over
    morning = await world.report(operator)
    assert [s["reason"] for s in morning["skipped"]] == ["off_hours"]
    await phone.close()


async def test_the_unit_on_turn_without_members_cannot_serve(world: World) -> None:
    world.long_logins()  # the clock jumps days ahead
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    operator = await world.operator()
    advance_to(world, 21)
    shift = local(world).date()
    # Unit 2 takes the first turn, and nobody of unit 2 is on the roster.
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start=shift.isoformat(), units=[2, 1]
    )
    body = reply.json()
    assert (body["on_duty"], body["reason"], body["unit_on_turn"]) == (False, "unit_empty", 2)
    incident = await world.report(operator)
    assert [(s["reason"], s["unit"]) for s in incident["skipped"]] == [("unit_empty", 2)]

    # A week later it is unit 1's turn.
    world.clock.advance(7 * 86400)
    assert mobile["id"] in team_ids(await world.report(operator))
    later = (
        await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=operator.headers)
    ).json()
    assert (later["on_duty"], later["unit_on_turn"]) == (True, 1)


async def test_duty_schedules_are_checked(world: World) -> None:
    fixed = await world.team("fixed_post")
    mobile = await world.team("mobile")
    good = {"start": "08:00", "end": "20:00", "rotation_start": "2026-01-05"}
    assert (await put_duty(world, fixed, **good)).status_code == 422, "fixed posts serve always"
    for bad in (
        {**good, "start": "25:00"},
        {**good, "end": "8:00"},
        {**good, "rotation_weeks": 3},
        {**good, "units": [1, 1]},
        {**good, "units": [0]},
    ):
        assert (await put_duty(world, mobile, **bad)).status_code == 422, bad
    operator = await world.operator()
    reply = await world.http.put(
        f"/api/v1/rosters/duty/{mobile['id']}", json=good, headers=operator.headers
    )
    assert reply.status_code == 403
    assert (await put_duty(world, mobile, **good)).status_code == 200
    reply = await world.http.get(
        f"/api/v1/rosters/duty/{mobile['id']}",
        params={"at": "2026-03-02T19:59:59+08:00"},
        headers=operator.headers,
    )
    assert reply.json()["on_duty"] is True
    for at in ("0001-01-01T00:00:00+08:00", "1767225600"):
        reply = await world.http.get(
            f"/api/v1/rosters/duty/{mobile['id']}", params={"at": at}, headers=operator.headers
        )
        assert reply.status_code == 422 and reply.json()["fields"][0]["field"] == "at", at
    for bad in ({**good, "rotation_weeks": True}, {**good, "units": [True]}):
        assert (await put_duty(world, mobile, **bad)).status_code == 422, bad
    admin = await world.admin()
    reply = await world.http.delete(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.status_code == 204
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.status_code == 404


async def test_a_schedule_written_otherwise_than_its_schema_says_is_refused_naming_it(
    world: World,
) -> None:
    """rotation_start is a date as YYYY-MM-DD (the schema's format date), start and end HH:MM
    in ASCII digits (its pattern): pydantic's lax mode took the numbers 0 and 86400 as seconds
    since 1970 and stored 1970-01-01 and 1970-01-02, and a date-time at midnight as its date;
    Unicode's \\d took Arabic-Indic and full-width digits. Nothing refused is stored."""
    mobile = await world.team("mobile")
    good = {"start": "08:00", "end": "20:00", "rotation_start": "2026-01-05"}
    for change, field in (
        ({"rotation_start": 0}, "rotation_start"),
        ({"rotation_start": 86400}, "rotation_start"),
        ({"rotation_start": 1.5}, "rotation_start"),
        ({"rotation_start": "2026-01-05T00:00:00"}, "rotation_start"),
        ({"rotation_start": "20260105"}, "rotation_start"),
        ({"rotation_start": "2026-1-5"}, "rotation_start"),
        ({"rotation_start": "\u0662\u0660\u0662\u0666-01-05"}, "rotation_start"),
        ({"rotation_start": "2026-01-05\n"}, "rotation_start"),
        ({"start": "0\u0668:0\u0660"}, "start"),
        ({"start": "1\uff19:0\uff10"}, "start"),
        ({"end": "\u0662\u0660:\u0660\u0660"}, "end"),
        ({"end": "20:00\n"}, "end"),
    ):
        reply = await put_duty(world, mobile, **{**good, **change})
        assert reply.status_code == 422, (change, reply.text)
        assert reply.json()["fields"][0]["field"] == field, (change, reply.text)
    admin = await world.admin()
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.status_code == 404, reply.text
    assert (await put_duty(world, mobile, **good)).status_code == 200
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.json()["rotation_start"] == "2026-01-05"


def test_the_alert_goes_to_the_leaders_of_the_unit_on_turn_and_of_no_unit() -> None:
    turn = OnTurn(unit=2, leader_units={"first": 1, "second": 2, "third": 3})
    assert leaders_on_turn(["first", "second", "captain"], turn) == (["second", "captain"], False)
    # Every leader speaks for an off-turn unit: all of them rather than nobody.
    assert leaders_on_turn(["first", "third"], turn) == (["first", "third"], True)
    assert leaders_on_turn([], turn) == ([], False)


async def add_member(world: World, team: dict[str, Any], phone: str, unit: int | None) -> str:
    admin = await world.admin()
    body = {"kind": "emergency", "group_name": team["name"], "name": f"队长{phone[-4:]}"}
    body |= {"phone": phone, "role": "leader", "unit": unit}
    reply = await world.http.post("/api/v1/rosters/members", json=body, headers=admin.headers)
    assert reply.status_code == 201, reply.text
    member_id: str = reply.json()["id"]
    return member_id


async def leader_of_unit(
    world: World, team: dict[str, Any], phone: str, unit: int | None
) -> Account:
    """A leader account linked to a new member of ``unit`` (None: a member of no unit)."""
    leader = await world.leader(team)
    member_id = await add_member(world, team, phone, unit)
    admin = await world.admin()
    reply = await world.http.put(
        f"/api/v1/rosters/members/{member_id}/account",
        json={"user_id": leader.id},
        headers=admin.headers,
    )
    assert reply.status_code == 200, reply.text
    return leader


async def rotate_weekly(world: World, team: dict[str, Any], units: list[int]) -> None:
    """Round the clock, ``units[0]`` on turn this week."""
    today = local(world).date().isoformat()
    reply = await put_duty(
        world, team, start="00:00", end="00:00", rotation_start=today, units=units
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["unit_on_turn"] == units[0]


async def taking_turns(world: World, phones: str) -> tuple[dict[str, Any], Account, Account]:
    """A mobile team of two units of four taking turns weekly, unit 1 on turn this week, and a
    leader in each unit (phones ``phones + "1"`` and ``phones + "2"``): on turn, off turn."""
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    await add_members(world, mobile, 2, 4)
    on_turn = await leader_of_unit(world, mobile, phones + "1", 1)
    off_turn = await leader_of_unit(world, mobile, phones + "2", 2)
    await rotate_weekly(world, mobile, [1, 2])
    return mobile, on_turn, off_turn


async def alerted_with(phone: Socket, incident: dict[str, Any]) -> None:
    alert = await phone.next_of("alert")
    assert alert["data"]["incident"]["id"] == incident["id"]


async def no_alert(phone: Socket, seconds: float = 0.3) -> bool:
    """No alert comes within ``seconds`` (the news of the team's incidents may)."""
    try:
        await phone.next_of("alert", seconds)
    except TimeoutError:
        return True
    return False


async def test_a_rotating_team_alerts_the_leaders_of_the_unit_on_turn_and_the_team_wide_ones(
    world: World,
) -> None:
    world.long_logins()  # the clock jumps a week ahead
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    await add_members(world, mobile, 2, 4)
    first = await leader_of_unit(world, mobile, "13800001001", 1)
    second = await leader_of_unit(world, mobile, "13800001002", 2)
    # The 队长 who answers for every shift: linked to no member, or to one in no unit.
    captain = await world.leader(mobile)
    deputy = await leader_of_unit(world, mobile, "13800001003", None)
    await rotate_weekly(world, mobile, [1, 2])
    await book_of(world)
    phones = {a.name: await world.connect(a) for a in (first, second, captain, deputy)}
    operator = await world.operator()

    with statements_sent(world.runtime) as sent:
        week1 = await world.report(operator)
    for leader in (first, captain, deputy):
        await alerted_with(phones[leader.name], week1)
    assert await no_alert(phones[second.name]), "unit 2 is off turn: its leader is not alerted"
    assert not [s for s in sent if "roster_members" in s], "the links come from the duty book"

    # A week on, unit 2 has the turn.
    world.clock.advance(7 * 86400)
    week2 = await world.report(operator)
    for leader in (second, captain, deputy):
        await alerted_with(phones[leader.name], week2)
    assert await no_alert(phones[first.name]), "unit 1 is off turn now"

    # Not alerted, the off-turn leader is still a leader of the team: he may take the dispatch
    # on, and the record says who did.
    dispatch_id = week2["dispatches"][0]["id"]
    reply = await world.http.post(f"/api/v1/dispatches/{dispatch_id}/accept", headers=first.headers)
    assert reply.status_code == 200, reply.text
    events = (
        await world.http.get(f"/api/v1/incidents/{week2['id']}/events", headers=operator.headers)
    ).json()
    hops = [(e["type"], e["actor_id"]) for e in events if e["type"] in ("delivered", "accepted")]
    assert hops == [("delivered", first.id), ("accepted", first.id)]
    assert [e["data"].get("off_turn") for e in events if e["type"] == "accepted"] == [True]
    assert not [e for e in events if e["type"] == "all_leaders_alerted"]
    for phone in phones.values():
        await phone.close()


async def events_of(world: World, by: Account, incident_id: str, kind: str) -> list[Any]:
    reply = await world.http.get(f"/api/v1/incidents/{incident_id}/events", headers=by.headers)
    assert reply.status_code == 200, reply.text
    return [e for e in reply.json() if e["type"] == kind]


async def news_of(phone: Socket, kind: str, incident: dict[str, Any]) -> dict[str, Any]:
    """The next message of ``kind`` about ``incident`` (others of the team's may come first)."""
    while True:
        message = await phone.next_of(kind)
        data = message["data"]
        if data.get("incident_id", data.get("id")) == incident["id"]:
            return data


async def test_an_incidents_news_goes_to_the_leaders_alerted_and_those_who_take_it_on(
    world: World,
) -> None:
    mobile, on_turn, off_turn = await taking_turns(world, "1380000400")
    captain = await world.leader(mobile)
    await book_of(world)
    phones = {a.id: await world.connect(a) for a in (on_turn, off_turn, captain)}
    operator = await world.operator()

    incident = await world.report(operator)
    for leader in (on_turn, captain):
        await alerted_with(phones[leader.id], incident)
    # The tier-1 minute passes with nobody there: the breach is news for those alerted only.
    world.clock.advance(61)
    for leader in (on_turn, captain):
        breach = await news_of(phones[leader.id], "chain.breached", incident)
        assert breach["tier"]["tier"] == 1
        await news_of(phones[leader.id], "incident.updated", incident)
    assert await phones[off_turn.id].silent(0.3), "not alerted, the off-turn leader is not woken"

    # He saw the alert on his partner's phone and goes: he takes the dispatch on for the team,
    # and from then on follows the incident with those alerted.
    dispatch_id = incident["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", headers=off_turn.headers
    )
    assert reply.status_code == 200, reply.text
    for leader in (on_turn, captain, off_turn):
        news = await news_of(phones[leader.id], "incident.updated", incident)
        assert news["dispatches"][0]["accepted_at"] is not None
    [accepted] = await events_of(world, operator, incident["id"], "accepted")
    assert (accepted["actor_id"], accepted["data"]["off_turn"]) == (off_turn.id, True)

    # His arrival is the team's: it is recorded, and said to be an off-turn leader's.
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json={}, headers=off_turn.headers
    )
    assert reply.status_code == 200, reply.text
    [arrived] = await events_of(world, operator, incident["id"], "arrived")
    assert (arrived["actor_id"], arrived["data"]["off_turn"]) == (off_turn.id, True)
    closing = f"/api/v1/incidents/{incident['id']}/close"
    assert (await world.http.post(closing, json={}, headers=operator.headers)).is_success
    for leader in (on_turn, captain, off_turn):
        phone = phones[leader.id]
        while (await news_of(phone, "incident.updated", incident))["status"] != "closed":
            pass
    for phone in phones.values():
        await phone.close()


async def test_an_off_turn_leaders_accept_is_the_teams_and_the_ring_is_not_alerted(
    world: World,
) -> None:
    mobile = await world.team("mobile")
    # Its 100 m zone misses the incident; its site is inside the 1 km ring.
    fixed = await world.team("fixed_post", *near(700, 90))
    ringed = await world.leader(fixed)
    await add_members(world, mobile, 1, 4)
    await add_members(world, mobile, 2, 4)
    await leader_of_unit(world, mobile, "13800005001", 1)
    off_turn = await leader_of_unit(world, mobile, "13800005002", 2)
    await rotate_weekly(world, mobile, [1, 2])
    await book_of(world)
    ring_phone = await world.connect(ringed)
    operator = await world.operator()

    incident = await world.report(operator)
    assert team_ids(incident) == {mobile["id"]}
    world.clock.advance(5)
    dispatch_id = incident["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", headers=off_turn.headers
    )
    assert reply.status_code == 200, reply.text
    world.clock.advance(16)  # the escalation step falls due at 20 s
    assert await escalation_outcome(world, incident["id"]) == "not needed: a tier-1 team accepted"
    assert team_ids(await world.incident(operator, incident["id"])) == {mobile["id"]}
    assert await no_alert(ring_phone), "the team is on its way: no other team is called"
    await ring_phone.close()


def alerted_you(incident: dict[str, Any]) -> dict[str, bool | None]:
    return {d["team_id"]: d["alerted_you"] for d in incident["dispatches"]}


async def listed(world: World, leader: Account, incident_id: str) -> dict[str, Any]:
    """The incident as the leader's open incidents list it (what his phone reloads)."""
    reply = await world.http.get(
        "/api/v1/incidents", params={"status": "open"}, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    [incident] = [i for i in reply.json() if i["id"] == incident_id]
    return incident


async def test_a_leaders_own_view_says_whether_the_incidents_alert_went_to_him(
    world: World,
) -> None:
    """A phone that reloads its incidents after a resync counts as missed only the alerts it
    was sent: the off-turn leader's view says the alert did not go to him."""
    post = await world.team("fixed_post")
    posts_leader = await world.leader(post)
    mobile, on_turn, off_turn = await taking_turns(world, "1380000600")
    captain = await world.leader(mobile)
    await book_of(world)
    operator = await world.operator()

    incident = await world.report(operator)
    assert team_ids(incident) == {post["id"], mobile["id"]}
    expected = {
        on_turn.id: {mobile["id"]: True, post["id"]: False},
        captain.id: {mobile["id"]: True, post["id"]: False},
        off_turn.id: {mobile["id"]: False, post["id"]: False},
        # A team whose units do not take turns alerts every leader.
        posts_leader.id: {mobile["id"]: False, post["id"]: True},
    }
    for leader in (on_turn, captain, off_turn, posts_leader):
        assert alerted_you(await listed(world, leader, incident["id"])) == expected[leader.id]
        assert alerted_you(await world.incident(leader, incident["id"])) == expected[leader.id]
    # Only a leader's own view says it: not the report's answer nor the console's view.
    nobody = {mobile["id"]: None, post["id"]: None}
    assert alerted_you(incident) == nobody
    assert alerted_you(await world.incident(operator, incident["id"])) == nobody

    # Taken on since, the dispatch is his to follow; its alert still never went to him.
    dispatch_id = next(d["id"] for d in incident["dispatches"] if d["team_id"] == mobile["id"])
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", headers=off_turn.headers
    )
    assert reply.status_code == 200, reply.text
    assert alerted_you(reply.json()) == nobody
    assert alerted_you(await listed(world, off_turn, incident["id"])) == expected[off_turn.id]


async def escalation_outcome(world: World, incident_id: str) -> str:
    for _ in range(250):
        async with world.runtime.sessionmaker() as session:
            outcome = await session.scalar(
                select(Job.outcome).where(
                    Job.kind == "escalate", Job.incident_id == incident_id, Job.status == "done"
                )
            )
        if outcome is not None:
            return str(outcome)
        await asyncio.sleep(0.02)
    raise AssertionError("the escalation step never fired")


async def test_when_every_leader_serves_an_off_turn_unit_all_are_alerted_and_it_is_recorded(
    world: World,
) -> None:
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    await add_members(world, mobile, 2, 4)
    leaders = [await leader_of_unit(world, mobile, f"1380000200{n}", 2) for n in (1, 2)]
    await rotate_weekly(world, mobile, [1, 2])
    phones = [await world.connect(leader) for leader in leaders]
    operator = await world.operator()

    incident = await world.report(operator)
    for phone in phones:
        await alerted_with(phone, incident)
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers)
    ).json()
    fell_back = [e["data"] for e in events if e["type"] == "all_leaders_alerted"]
    assert [(f["team_id"], f["dispatch_id"], f["unit"]) for f in fell_back] == [
        (mobile["id"], incident["dispatches"][0]["id"], 1)
    ]
    assert "unit 1" in fell_back[0]["detail"]
    for leader in leaders:
        assert alerted_you(await world.incident(leader, incident["id"])) == {mobile["id"]: True}
    for phone in phones:
        await phone.close()


async def test_the_escalation_ring_alerts_the_leaders_of_the_unit_on_turn(world: World) -> None:
    fixed = await world.team("fixed_post")
    # Its 500 m zone misses the incident; its site is inside the 1 km ring.
    mobile = await world.team("mobile", *near(700, 90))
    await add_members(world, mobile, 1, 4)
    await add_members(world, mobile, 2, 4)
    on_turn = await leader_of_unit(world, mobile, "13800003001", 2)
    off_turn = await leader_of_unit(world, mobile, "13800003002", 1)
    await rotate_weekly(world, mobile, [2, 1])
    phones = [await world.connect(on_turn), await world.connect(off_turn)]
    operator = await world.operator()

    incident = await world.report(operator)
    assert team_ids(incident) == {fixed["id"]}
    world.clock.advance(21)  # nobody accepted
    await escalated(world, operator, incident["id"])
    await alerted_with(phones[0], incident)
    assert await no_alert(phones[1]), "the ring alerts the unit on turn, not unit 1's leader"
    for phone in phones:
        await phone.close()


async def book_of(world: World) -> Duties:
    """The process's duty book once it has loaded the latest change."""
    for _ in range(200):
        duties = world.runtime.duty.current()
        if duties is not None:
            return duties
        await asyncio.sleep(0.01)
    raise AssertionError("the duty book never reloaded")


async def test_the_duty_book_follows_every_schedule_and_roster_change(world: World) -> None:
    mobile = await world.team("mobile")
    admin = await world.admin()
    assert mobile["id"] not in await book_of(world)

    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start="2026-01-05", units=[1, 2]
    )
    assert reply.status_code == 200, reply.text
    kept = (await book_of(world))[mobile["id"]]
    assert (kept.rotation.start_minute, kept.rotation.end_minute) == (20 * 60, 8 * 60)
    assert tuple(kept.rotation.units) == (1, 2) and kept.unit_sizes == {}

    await add_members(world, mobile, 2, 3)
    assert (await book_of(world))[mobile["id"]].unit_sizes == {2: 3}
    members = await world.http.get(
        "/api/v1/rosters/members", params={"team_id": mobile["id"]}, headers=admin.headers
    )
    gone = members.json()[0]["id"]
    reply = await world.http.delete(f"/api/v1/rosters/members/{gone}", headers=admin.headers)
    assert reply.status_code == 204
    assert (await book_of(world))[mobile["id"]].unit_sizes == {2: 2}

    leader = await world.leader(mobile)
    member = members.json()[1]["id"]
    for user_id, units in ((leader.id, {leader.id: 2}), (None, {})):
        reply = await world.http.put(
            f"/api/v1/rosters/members/{member}/account",
            json={"user_id": user_id},
            headers=admin.headers,
        )
        assert reply.status_code == 200, reply.text
        assert (await book_of(world))[mobile["id"]].leader_units == units

    reply = await world.http.delete(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.status_code == 204
    assert mobile["id"] not in await book_of(world)


async def test_a_report_reads_no_duty_table_while_the_book_is_current(world: World) -> None:
    world.long_logins()
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    today = local(world).date().isoformat()
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start=today, units=[1]
    )
    assert reply.is_success, reply.text
    await book_of(world)
    operator = await world.operator()
    advance_to(world, 12)
    with statements_sent(world.runtime) as sent:
        incident = await world.report(operator)

    assert [s["reason"] for s in incident["skipped"]] == ["off_hours"]
    assert not [s for s in sent if "duty_schedules" in s or "roster_members" in s]


class GatedLoads:
    """The server's own load of the duty book, each held until the test lets it finish."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.gates: list[asyncio.Event] = []

    async def __call__(self) -> Duties:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        async with self.world.runtime.sessionmaker() as session:
            return await load_duties(session)


async def test_a_load_overtaken_by_a_newer_change_is_not_installed_and_close_stops_loads(
    world: World,
) -> None:
    mobile = await world.team("mobile")
    loads = GatedLoads(world)
    book = DutyBook(loads)
    book.changed()
    await asyncio.sleep(0)
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start="2026-01-05", units=[]
    )
    assert reply.status_code == 200, reply.text
    book.changed()  # the schedule's commit, heard while the first load is still out
    await asyncio.sleep(0)
    first, second = loads.gates

    second.set()
    while book.current() is None:
        await asyncio.sleep(0.01)
    assert mobile["id"] in (book.current() or {})
    first.set()  # it read the tables too, but after a newer change began: not installed
    await asyncio.sleep(0.1)
    assert mobile["id"] in (book.current() or {})

    book.changed()
    await asyncio.sleep(0)
    await book.close()
    assert book.current() is None, "a stopped load installs nothing; reports read the tables"


async def test_the_duty_of_a_team_that_does_not_exist_is_not_found_naming_the_team(
    world: World,
) -> None:
    admin = await world.admin()
    for method in ("GET", "DELETE"):
        reply = await world.http.request(
            method, "/api/v1/rosters/duty/none-such", headers=admin.headers
        )
        assert reply.status_code == 404, (method, reply.text)
        assert reply.json()["field"] == "team_id"
        assert reply.json()["detail"] == "team 'none-such' does not exist"
    mobile = await world.team("mobile")
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.status_code == 404 and reply.json()["field"] == "team_id"
    assert "has no duty schedule: it serves round the clock" in reply.json()["detail"]


async def test_a_moment_whose_shift_has_no_date_is_refused_naming_at(world: World) -> None:
    mobile = await world.team("mobile")
    night = {"start": "20:00", "end": "09:00", "rotation_start": "2026-01-05", "units": []}
    assert (await put_duty(world, mobile, **night)).status_code == 200
    operator = await world.operator()

    async def duty_at(at: str) -> Any:
        return await world.http.get(
            f"/api/v1/rosters/duty/{mobile['id']}", params={"at": at}, headers=operator.headers
        )

    # 10000-01-01 04:00 in Shanghai; and 0001-01-01 08:05 (local mean time), in a night shift
    # that began the day before the first day.
    for at in ("9999-12-31T20:00:00Z", "0001-01-01T00:00:00Z"):
        reply = await duty_at(at)
        assert reply.status_code == 422, (at, reply.text)
        assert reply.json()["field"] == "at" and "Asia/Shanghai" in reply.json()["detail"]
    last = await duty_at("9999-12-31T15:59:59Z")  # 23:59:59 on the last day
    assert last.status_code == 200 and last.json()["on_duty"] is True
    first = await duty_at("0001-01-01T16:00:00Z")  # just after midnight on the second day
    assert first.status_code == 200 and first.json()["on_duty"] is True


async def steps_of(world: World, incident_id: str) -> list[Job]:
    async with world.runtime.sessionmaker() as session:
        found = await session.scalars(
            select(Job).where(Job.incident_id == incident_id).order_by(Job.due_at)
        )
        return list(found)


async def test_a_team_coming_on_duty_just_after_an_uncovered_report_is_alerted_as_it_does(
    world: World,
) -> None:
    """A covering mobile team on duty from 20:00, reported to at 19:59:50 with no other tier-1
    team covering: the ring was drawn at once, while it was off duty, and no step came after.
    It was never alerted, tier 1 left uncovered, and no operator action could dispatch it."""
    world.long_logins()
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start="2026-01-05", units=[1]
    )
    assert reply.status_code == 200, reply.text
    phone = await world.connect(await world.leader(mobile))
    operator = await world.operator()

    # Its duty begins past tier 1's 60 s: no step waits for it.
    advance_to(world, 19, 58, 50)
    early = await world.report(operator)
    assert [s["reason"] for s in early["skipped"]] == ["off_hours"]
    assert early["dispatches"] == [] and await steps_of(world, early["id"]) == []

    on_duty = advance_to(world, 19, 59, 50) + timedelta(seconds=10)
    incident = await world.report(operator)
    assert [s["reason"] for s in incident["skipped"]] == ["off_hours"]
    assert incident["dispatches"] == []
    [step] = await steps_of(world, incident["id"])
    assert (step.kind, step.due_at, step.data["teams"]) == ("escalate", on_duty, [mobile["id"]])
    world.clock.advance(9.9)
    assert await no_alert(phone), "alerted before its duty hours began"

    world.clock.advance(0.1)  # 20:00:00
    await alerted_with(phone, incident)
    await escalated(world, operator, incident["id"])
    after = await world.incident(operator, incident["id"])
    assert [(d["team_id"], d["ring"]) for d in after["dispatches"]] == [(mobile["id"], 1)]
    assert after["chain"][0]["covered"] is True
    # It was off duty at the report, and the incident keeps saying so.
    assert [s["team_id"] for s in after["skipped"]] == [mobile["id"]]
    # The ring drawn at the report found nobody; the step that came at 20:00 found the team.
    at_once, came = await events_of(world, operator, incident["id"], "escalated")
    assert (at_once["data"]["reason"], at_once["data"]["team_ids"]) == (
        "no tier-1 zone covers the incident",
        [],
    )
    assert (came["data"]["reason"], came["data"]["team_ids"]) == (
        "a covering tier-1 team came on duty",
        [mobile["id"]],
    )
    assert datetime.fromisoformat(came["at"]) == on_duty
    await phone.close()


async def test_a_team_coming_on_duty_is_not_alerted_once_tier_one_has_answered(
    world: World,
) -> None:
    """With a fixed post covering too, the team coming on duty is alerted when it does unless
    the fixed post has accepted by then: it is on its way, as for the escalation ring."""
    world.long_logins()
    fixed = await world.team("fixed_post")
    mobile = await world.team("mobile")
    await add_members(world, mobile, 1, 4)
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start="2026-01-05", units=[1]
    )
    assert reply.status_code == 200, reply.text
    advance_to(world, 19, 59, 50)
    operator = await world.operator()
    fixed_leader = await world.leader(fixed)

    answered = await world.report(operator)
    unanswered = await world.report(operator, *near(50, 0))
    assert team_ids(answered) == team_ids(unanswered) == {fixed["id"]}
    world.clock.advance(5)
    dispatch_id = answered["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", headers=fixed_leader.headers
    )
    assert reply.status_code == 200, reply.text

    world.clock.advance(5)  # 20:00:00
    after = await world.wait_for(operator, unanswered["id"], lambda i: len(i["dispatches"]) == 2)
    assert mobile["id"] in team_ids(after)
    outcomes = [s.outcome for s in await steps_of(world, answered["id"])]
    assert outcomes[0] == "not needed: a tier-1 team accepted"
    assert team_ids(await world.incident(operator, answered["id"])) == {fixed["id"]}


async def test_teams_dissolved_with_duty_hours_leave_the_duty_book(world: World) -> None:
    """Mobile teams are dissolved and formed anew for months: the duty book each process holds
    keeps the schedules of the teams in service, not of every team ever given one."""
    admin = await world.admin()
    staying = await world.team("mobile")
    hours = {"start": "20:00", "end": "08:00", "rotation_start": "2026-01-05", "units": [1]}
    assert (await put_duty(world, staying, **hours)).status_code == 200
    before = set(await book_of(world))
    assert staying["id"] in before
    for _ in range(3):
        team = await world.team("mobile")
        assert (await put_duty(world, team, **hours)).status_code == 200
        reply = await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
        assert reply.status_code == 204
    assert set(await book_of(world)) == before
