"""Roster and duty changes sent at once: the rules hold, and every answer is a clean one.

Each rule is checked twice: with eight requests in flight together (on both backends), and on
PostgreSQL step by step, with a second writer's transaction open while the request runs.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.rosters.races import at_once, racing_a_writer, statuses, while_writing
from tests.rosters.test_rosters import ID_A, ID_B, member, upload, xlsx
from tests.support import Account, World

AREA_MEMBER = {
    "kind": "area",
    "group_name": "gX",
    "name": "n",
    "phone": "13912345678",
    "role": "member",
}


async def members(world: World, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await world.read(
        "/api/v1/rosters/members", await world.admin(), **params
    )
    return found


async def test_a_phone_added_to_a_team_by_requests_at_once_is_on_its_roster_once(
    world: World,
) -> None:
    admin = await world.admin()

    async def add(_: int) -> httpx.Response:
        return await world.http.post(
            "/api/v1/rosters/members", json=AREA_MEMBER, headers=admin.headers
        )

    replies = await at_once(add)

    assert statuses(replies) == [201] + [409] * 7
    assert {r.json()["field"] for r in replies if r.status_code == 409} == {"phone"}
    assert len(await members(world, kind="area", group_name="gX")) == 1


async def test_a_phone_added_while_another_transaction_adds_it_is_a_conflict(
    world: World,
) -> None:
    admin = await world.admin()

    reply = await racing_a_writer(
        world,
        lambda: world.http.post("/api/v1/rosters/members", json=AREA_MEMBER, headers=admin.headers),
        "INSERT INTO roster_members (id, kind, group_name, name, phone, role, created_at,"
        " updated_at) VALUES ($1, 'area', 'gX', 'n', '13912345678', 'member', now(), now())",
        uuid.uuid4().hex,
    )

    assert reply.status_code == 409, reply.text
    assert reply.json()["field"] == "phone"
    assert len(await members(world, kind="area", group_name="gX")) == 1


async def team_of_eight(world: World) -> tuple[dict[str, Any], list[str], Account]:
    """A mobile team with eight members on its roster, and a leader account of the team."""
    team = await world.team("mobile")
    rows = [member(i + 1, team["name"], 1, f"队员{i}", "队员", f"1390000000{i}") for i in range(8)]
    reply = await upload(world, xlsx(rows))
    assert reply.status_code == 200, reply.text
    ids = [m["id"] for m in await members(world, team_id=team["id"])]
    return team, ids, await world.leader(team)


async def test_one_account_linked_to_many_members_at_once_speaks_for_one(world: World) -> None:
    _, ids, leader = await team_of_eight(world)
    admin = await world.admin()

    async def link(i: int) -> httpx.Response:
        return await world.http.put(
            f"/api/v1/rosters/members/{ids[i]}/account",
            json={"user_id": leader.id},
            headers=admin.headers,
        )

    replies = await at_once(link)

    assert statuses(replies) == [200] + [409] * 7
    assert {r.json()["field"] for r in replies if r.status_code == 409} == {"user_id"}
    linked = [m for m in await members(world) if m["user_id"] == leader.id]
    assert len(linked) == 1


async def test_an_account_linked_while_another_transaction_links_it_is_a_conflict(
    world: World,
) -> None:
    _, ids, leader = await team_of_eight(world)
    admin = await world.admin()

    reply = await racing_a_writer(
        world,
        lambda: world.http.put(
            f"/api/v1/rosters/members/{ids[1]}/account",
            json={"user_id": leader.id},
            headers=admin.headers,
        ),
        "UPDATE roster_members SET user_id = $1 WHERE id = $2",
        leader.id,
        ids[0],
    )

    assert reply.status_code == 409, reply.text
    assert reply.json()["field"] == "user_id"
    assert [m["id"] for m in await members(world) if m["user_id"] == leader.id] == [ids[0]]


async def test_an_account_linked_to_a_member_another_transaction_removes_is_not_found(
    world: World,
) -> None:
    """The link waits for the removal under way, and then finds no member: 404 naming it, not
    a 500 for a row that was gone when the link was written."""
    _, ids, leader = await team_of_eight(world)
    admin = await world.admin()

    reply = await racing_a_writer(
        world,
        lambda: world.http.put(
            f"/api/v1/rosters/members/{ids[0]}/account",
            json={"user_id": leader.id},
            headers=admin.headers,
        ),
        "DELETE FROM roster_members WHERE id = $1",
        ids[0],
    )

    assert reply.status_code == 404, reply.text
    assert reply.json()["field"] == "member_id"
    assert ids[0] not in [m["id"] for m in await members(world)]


def shift(i: int) -> dict[str, Any]:
    return {"start": f"{12 + i:02d}:00", "end": "09:00", "rotation_start": "2026-01-05"}


async def test_a_duty_schedule_set_by_requests_at_once_is_the_last_ones(world: World) -> None:
    mobile = await world.team("mobile")
    admin = await world.admin()

    async def put(i: int) -> httpx.Response:
        return await world.http.put(
            f"/api/v1/rosters/duty/{mobile['id']}", json=shift(i), headers=admin.headers
        )

    replies = await at_once(put)

    assert statuses(replies) == [200] * 8
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.json()["start"] in {shift(i)["start"] for i in range(8)}


async def test_a_duty_schedule_set_while_another_transaction_sets_it_wins(world: World) -> None:
    mobile = await world.team("mobile")
    admin = await world.admin()

    reply = await racing_a_writer(
        world,
        lambda: world.http.put(
            f"/api/v1/rosters/duty/{mobile['id']}", json=shift(8), headers=admin.headers
        ),
        "INSERT INTO duty_schedules (team_id, start_minute, end_minute, rotation_weeks,"
        " rotation_start, units, updated_at) VALUES ($1, 0, 0, 1, '2026-01-05', '[]', now())",
        mobile["id"],
    )

    assert reply.status_code == 200, reply.text
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert (reply.json()["start"], reply.json()["end"]) == ("20:00", "09:00")


async def test_a_file_that_adds_a_phone_another_transaction_adds_is_refused_whole(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    rows = [
        member(1, team["name"], 1, "甲", "队长", "13800000001"),
        member(2, team["name"], 1, "乙", "队员", "13800000002"),
    ]

    reply = await racing_a_writer(
        world,
        lambda: upload(world, xlsx(rows)),
        "INSERT INTO roster_members (id, kind, group_name, team_id, name, phone, role,"
        " created_at, updated_at) VALUES ($1, 'emergency', $2, $3, '丙', '13800000002',"
        " 'member', now(), now())",
        uuid.uuid4().hex,
        team["name"],
        team["id"],
    )

    assert reply.status_code == 409, reply.text
    assert reply.json()["field"] == "body" and team["name"] in reply.json()["detail"]
    assert [m["name"] for m in await members(world, team_id=team["id"])] == ["丙"]


async def test_members_may_swap_phones_in_a_file_and_a_phone_may_serve_two_teams(
    world: World,
) -> None:
    one = await world.team("fixed_post")
    two = await world.team("mobile")
    first = [
        member(1, one["name"], 1, "甲", "队长", "13800000001", id_number=ID_A),
        member(2, one["name"], 1, "乙", "队员", "13800000002", id_number=ID_B),
        # A post's landline serves people of two teams.
        member(3, one["name"], 1, "值班室", "队员", "0769-87654321"),
        member(4, two["name"], 1, "值班室", "队员", "0769-87654321"),
    ]
    assert (await upload(world, xlsx(first))).status_code == 200
    before = {m["name"]: m for m in await members(world, team_id=one["id"])}

    swapped = [
        member(1, one["name"], 1, "甲", "队长", "13800000002", id_number=ID_A),
        member(2, one["name"], 1, "乙", "队员", "13800000001", id_number=ID_B),
        *first[2:],
    ]
    reply = await upload(world, xlsx(swapped))

    assert reply.status_code == 200, reply.text
    assert (reply.json()["created"], reply.json()["updated"]) == (0, 4)
    after = {m["name"]: m for m in await members(world, team_id=one["id"])}
    assert (after["甲"]["id"], after["甲"]["phone"]) == (before["甲"]["id"], "13800000002")
    assert (after["乙"]["id"], after["乙"]["phone"]) == (before["乙"]["id"], "13800000001")
    assert [m["phone"] for m in await members(world, team_id=two["id"])] == ["076987654321"]


async def test_a_schedule_set_while_the_team_becomes_a_fixed_post_is_refused(
    world: World,
) -> None:
    """The change of kind (PATCH /teams) is under way, not committed, when the schedule comes."""
    mobile = await world.team("mobile")
    admin = await world.admin()

    reply = await racing_a_writer(
        world,
        lambda: world.http.put(
            f"/api/v1/rosters/duty/{mobile['id']}", json=shift(8), headers=admin.headers
        ),
        "UPDATE teams SET kind = 'fixed_post' WHERE id = $1",
        mobile["id"],
    )

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "team_id"
    reply = await world.http.get(f"/api/v1/rosters/duty/{mobile['id']}", headers=admin.headers)
    assert reply.status_code == 404


async def test_a_file_imported_while_its_team_is_renamed_is_under_the_new_name(
    world: World,
) -> None:
    """The rename (PATCH /teams) is under way, not committed, when the file comes naming the
    team as it was: the import waits for it, and writes the members under the new name."""
    team = await world.team("mobile", name="银湖工业区机动应急联防队")
    rows = [member(i + 1, team["name"], 1, f"队员{i}", "队员", f"1390000000{i}") for i in range(4)]

    reply = await racing_a_writer(
        world,
        lambda: upload(world, xlsx(rows)),
        "UPDATE teams SET name = '银湖工业区机动应急联防队（二期）',"
        " former_names = '[\"银湖工业区机动应急联防队\"]' WHERE id = $1",
        team["id"],
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["groups"] == ["银湖工业区机动应急联防队（二期）"]
    found = await members(world, team_id=team["id"])
    assert len(found) == 4
    assert {m["group_name"] for m in found} == {"银湖工业区机动应急联防队（二期）"}


async def test_two_files_imported_at_once_for_one_team_leave_one_files_roster(
    world: World,
) -> None:
    """The second file comes while the first is being written: it waits for it, and then
    replaces what the first wrote. Each reading the roster before the other wrote, neither
    removed the other's members, and the roster was the two files together."""
    team = await world.team("fixed_post")
    first = xlsx([member(1, team["name"], "", "陈一", "队长", "13800000001")])
    second = xlsx([member(1, team["name"], "", "王二", "队长", "13900000002")])

    one, two = await while_writing(
        world,
        "INSERT INTO roster_members",
        lambda: upload(world, first),
        lambda: upload(world, second),
    )

    assert (one.status_code, two.status_code) == (200, 200), (one.text, two.text)
    assert (two.json()["created"], two.json()["removed"]) == (1, 1)
    assert [m["name"] for m in await members(world, team_id=team["id"])] == ["王二"]


async def test_an_id_number_added_to_the_roster_by_requests_at_once_is_on_it_once(
    world: World,
) -> None:
    teams = [await world.team("fixed_post") for _ in range(4)]
    admin = await world.admin()

    async def add(i: int) -> httpx.Response:
        body = {
            "kind": "emergency",
            "group_name": teams[i % 4]["name"],
            "name": "陈大文",
            "phone": f"1380000000{i}",
            "role": "guard",
            "id_number": ID_A,
        }
        return await world.http.post("/api/v1/rosters/members", json=body, headers=admin.headers)

    replies = await at_once(add)

    assert statuses(replies) == [201] + [409] * 7
    assert {r.json()["field"] for r in replies if r.status_code == 409} == {"id_number"}
    assert [m["id_number"] for m in await members(world, kind="emergency")] == [ID_A]

    # Step by step: the second comes while the first is being written, and waits for it.
    await world.http.delete(f"/api/v1/teams/{teams[0]['id']}", headers=admin.headers)
    for team in teams[1:]:
        for found in await members(world, team_id=team["id"]):
            await world.http.delete(f"/api/v1/rosters/members/{found['id']}", headers=admin.headers)
    one, two = await while_writing(
        world, "INSERT INTO roster_members", lambda: add(1), lambda: add(2)
    )
    assert (one.status_code, two.status_code) == (201, 409), (one.text, two.text)
    assert two.json()["field"] == "id_number"
