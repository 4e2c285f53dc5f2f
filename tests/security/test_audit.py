"""The audit trail: who changed what, when, from where; readable by admin and auditor only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dispatch.schemas import show_time
from tests.processes import cli, server_env
from tests.support import Account, World


async def trail(world: World, by: Account, **params: Any) -> list[dict[str, Any]]:
    reply = await world.http.get("/api/v1/audit", params=params, headers=by.headers)
    assert reply.status_code == 200, reply.text
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


async def test_team_user_and_incident_changes_leave_who_when_what_and_where(
    world: World,
) -> None:
    admin = await world.admin()
    world.clock.advance(5)
    team = await world.team()
    await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"radius_m": 150}, headers=admin.headers
    )
    reply = await world.http.post(
        "/api/v1/users",
        json={"name": "张值班", "password": "long-password", "role": "operator"},
        headers=admin.headers,
    )
    user_id = reply.json()["id"]
    await world.http.patch(
        f"/api/v1/users/{user_id}", json={"password": "another-password"}, headers=admin.headers
    )
    operator = await world.operator()
    incident = await world.report(operator)
    await world.http.post(f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers)

    rows = await trail(world, admin)
    changes = [r for r in rows if r["action"] != "issue_token"]
    assert [r["action"] for r in reversed(changes)] == [
        "create_team",
        "update_team",
        "create_user",
        "update_user",
        "report_incident",
        "close_incident",
    ]
    created = changes[-1]
    assert created["actor_id"] == admin.id and created["actor_role"] == "admin"
    assert created["address"] == "127.0.0.1"
    assert created["target_id"] == team["id"]
    assert created["route"] == "/api/v1/teams" and created["method"] == "POST"
    assert created["at"] == show_time(world.clock.now())
    by_action = {r["action"]: r for r in changes}
    assert by_action["update_team"]["data"] == {
        "path": {"team_id": team["id"]},
        "changes": {"radius_m": 150.0},
    }
    assert by_action["create_user"]["data"] == {
        "name": "张值班",
        "role": "operator",
        "team_id": None,
    }
    # The password itself is never written down, only that one was set.
    assert by_action["update_user"]["data"]["changes"] == {"password": "[withheld]"}
    assert by_action["report_incident"]["target_id"] == incident["id"]
    assert by_action["report_incident"]["actor_id"] == operator.id
    assert by_action["close_incident"]["target_id"] == incident["id"]


async def test_the_address_is_an_ip_address_in_its_normal_form_or_a_marker(
    world: World,
) -> None:
    """From a trusted proxy (the test server trusts 127.0.0.1) uvicorn takes the address from
    X-Forwarded-For as it comes. Anything but an IP address is stored as a marker: one of 65
    characters (audit_log.address holds 64) made every audited write a 500 on PostgreSQL."""
    admin = await world.admin()
    cases = [
        ("a" * 65, "(not an IP address)"),
        ("x" * 300, "(not an IP address)"),
        ("not-an-address", "(not an IP address)"),
        ("2001:DB8:0:0::0001", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("203.0.113.9", "203.0.113.9"),
    ]
    for n, (forwarded, stored) in enumerate(cases):
        body = {
            "name": f"xff-{n}",
            "kind": "fixed_post",
            "location": {"lon": 114.159, "lat": 22.847},
        }
        reply = await world.http.post(
            "/api/v1/teams", json=body, headers={**admin.headers, "X-Forwarded-For": forwarded}
        )
        assert reply.status_code == 201, (forwarded, reply.status_code, reply.text)
        [row] = await trail(world, admin, target_id=reply.json()["id"])
        assert row["address"] == stored, forwarded


async def test_a_refused_change_leaves_no_row(world: World) -> None:
    admin = await world.admin()
    team = await world.team()
    before = await trail(world, admin, action="update_team")
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"radius_m": -1}, headers=admin.headers
    )
    assert reply.status_code == 422
    missing = await world.http.delete("/api/v1/teams/none-such", headers=admin.headers)
    assert missing.status_code == 404
    assert await trail(world, admin, action="update_team") == before
    assert await trail(world, admin, action="retire_team") == []


async def test_phone_numbers_are_masked_for_the_auditor_and_whole_for_the_admin(
    world: World,
) -> None:
    admin = await world.admin()
    auditor = await world.account("auditor")
    leader = await world.leader(await world.team())
    reply = await world.http.put(
        f"/api/v1/users/{leader.id}/phone", json={"phone": "13812345678"}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    [as_admin] = await trail(world, admin, action="set_phone")
    [as_auditor] = await trail(world, auditor, action="set_phone")
    assert as_admin["data"]["phone"] == "13812345678"
    assert as_auditor["data"]["phone"] == "138****5678"


async def test_filters_and_paging(world: World) -> None:
    admin = await world.admin()
    auditor = await world.account("auditor")
    teams = []
    for _ in range(5):
        world.clock.advance(60)
        teams.append(await world.team())
    created = await trail(world, auditor, action="create_team")
    assert [r["target_id"] for r in created] == [t["id"] for t in reversed(teams)]
    first = await world.http.get(
        "/api/v1/audit", params={"action": "create_team", "limit": 2}, headers=auditor.headers
    )
    page = first.json()
    assert len(page["items"]) == 2 and page["next_before_id"] == page["items"][-1]["id"]
    rest = await trail(
        world, auditor, action="create_team", limit=10, before_id=page["next_before_id"]
    )
    assert [r["target_id"] for r in page["items"] + rest] == [t["id"] for t in reversed(teams)]
    # The last page says it is the last, also when the rows left fill it exactly.
    for limit, sizes in ((5, [5]), (3, [3, 2]), (1, [1] * 5)):
        pages: list[list[dict[str, Any]]] = []
        before: int | None = None
        while True:
            params: dict[str, Any] = {"action": "create_team", "limit": limit}
            if before is not None:
                params["before_id"] = before
            reply = await world.http.get("/api/v1/audit", params=params, headers=auditor.headers)
            pages.append(reply.json()["items"])
            before = reply.json()["next_before_id"]
            if before is None:
                break
        assert [len(p) for p in pages] == sizes, limit
    assert await trail(world, auditor, target_id=teams[0]["id"]) == [created[-1]]
    assert {r["actor_id"] for r in await trail(world, auditor, actor_id=admin.id)} == {admin.id}
    since = await trail(world, auditor, action="create_team", **{"from": teams[3]["created_at"]})
    assert [r["target_id"] for r in since] == [teams[4]["id"], teams[3]["id"]]


async def test_the_trail_cannot_be_changed_through_the_api(world: World) -> None:
    admin = await world.admin()
    await world.team()
    [row] = await trail(world, admin, action="create_team")
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        for path in ("/api/v1/audit", f"/api/v1/audit/{row['id']}"):
            reply = await world.http.request(method, path, headers=admin.headers, json={})
            assert reply.status_code in (404, 405), (method, path, reply.status_code)
    assert await trail(world, admin, action="create_team") == [row]
    operator = await world.operator()
    assert (await world.http.get("/api/v1/audit", headers=operator.headers)).status_code == 403


async def test_the_command_line_leaves_its_row_too(world: World, tmp_path: Path) -> None:
    env = server_env(world.runtime.settings.database_url, tmp_path)
    add = ("users", "add", "cli-admin", "--role", "admin")
    user_id = await cli(env, *add, stdin="long-password\n")
    admin = await world.admin()
    [row] = await trail(world, admin, action="cli_add_user")
    assert row["target_id"] == user_id and row["actor_name"] == "command line"
    assert row["data"] == {"name": "cli-admin", "role": "admin", "team_id": None}


async def test_bounds_off_the_calendar_are_named(world: World) -> None:
    auditor = await world.account("auditor")
    for params, field in [
        ({"from": "0001-01-01T00:00:00+08:00"}, "from"),
        ({"to": "9999-12-31T23:59:59-12:00"}, "to"),
        ({"from": "1767225600"}, "from"),
    ]:
        reply = await world.http.get("/api/v1/audit", params=params, headers=auditor.headers)
        assert reply.status_code == 422, (params, reply.text)
        assert reply.json()["fields"][0]["field"] == field


async def test_a_period_that_ends_before_it_begins_is_named_as_the_reports_name_it(
    world: World,
) -> None:
    """``from`` later than ``to`` (or the same moment: [from, to) holds none) answered 200 with
    an empty page, as if nothing had happened then; the reports answer 422 naming ``from``."""
    auditor = await world.account("auditor")
    for start, end in (
        ("2026-03-02T00:00:00+08:00", "2026-03-01T00:00:00+08:00"),
        ("2026-03-01T00:00:00+08:00", "2026-02-28T16:00:00Z"),
    ):
        reply = await world.http.get(
            "/api/v1/audit", params={"from": start, "to": end}, headers=auditor.headers
        )
        assert reply.status_code == 422, (start, end, reply.text)
        assert reply.json()["field"] == "from", reply.text
        detail = reply.json()["detail"]
        assert detail.startswith("from: the period's start must be before its end"), detail
        # Both bounds in Beijing time, and that to is excluded.
        assert "2026-03-01T00:00:00+08:00" in detail and "excluded" in detail, detail
        report = await world.http.get(
            "/api/v1/reports/response-times",
            params={"from": start, "to": end},
            headers=auditor.headers,
        )
        assert (report.status_code, report.json()) == (422, reply.json())
    rows = await trail(
        world, auditor, **{"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-01T00:00:01+08:00"}
    )
    assert rows == []


async def test_a_file_import_leaves_the_file_digest_and_what_it_changed(world: World) -> None:
    admin = await world.admin()
    team = await world.team("fixed_post", name="大利批发市场驻点应急联防队")
    roster = (
        "序号,队伍名称,单元,姓名,职务,联系电话,身份证号码,所在单位\r\n"
        f"1,{team['name']},1,黄队长,队长,13800001111,,大利公司\r\n"
    ).encode()
    reply = await world.http.post(
        "/api/v1/rosters/import",
        params={"kind": "emergency"},
        content=roster,
        headers=admin.headers,
    )
    assert reply.status_code == 200, reply.text
    villages = json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"name": "上元村"},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [
                            [[114.16, 22.84], [114.17, 22.84], [114.17, 22.85], [114.16, 22.84]]
                        ],
                    },
                }
            ],
        }
    ).encode()
    reply = await world.http.post(
        "/api/v1/villages/import", content=villages, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text

    [roster_row] = await trail(world, admin, action="import_roster")
    assert roster_row["data"]["file"] == {
        "bytes": len(roster),
        "sha256": hashlib.sha256(roster).hexdigest(),
    }
    assert roster_row["data"]["kind"] == "emergency"
    assert roster_row["data"]["groups"] == [team["name"]]
    assert (roster_row["data"]["created"], roster_row["data"]["removed"]) == (1, 0)
    [village_row] = await trail(world, admin, action="import_villages")
    assert village_row["data"]["file"]["sha256"] == hashlib.sha256(villages).hexdigest()
    assert village_row["data"]["created"] == ["上元村"]
    assert village_row["data"]["crs"] == "wgs84"
