"""Registering teams and asking which teams cover a point."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pyproj import Geod

from geo.crs import CRS, from_wgs84
from geo.geodesy import distance_m
from tests.rosters.races import at_once, racing_a_writer, statuses
from tests.support import QINGXI, World

GEOD = Geod(ellps="WGS84")


def point_at(lon: float, lat: float, azimuth: float, metres: float) -> tuple[float, float]:
    x, y, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return float(x), float(y)


async def test_tier_and_default_radius_follow_from_kind(world: World) -> None:
    fixed = await world.team("fixed_post")
    mobile = await world.team("mobile")
    patrol = await world.team("patrol", radius_m=2500)
    response = await world.team("response", radius_m=8000)
    assert (fixed["tier"], fixed["radius_m"]) == (1, 100.0)
    assert (mobile["tier"], mobile["radius_m"]) == (1, 500.0)
    assert (patrol["tier"], patrol["radius_m"]) == (2, 2500.0)
    assert (response["tier"], response["radius_m"]) == (3, 8000.0)


async def test_police_teams_need_a_radius_or_a_zone(world: World) -> None:
    admin = await world.admin()
    body = {"name": "巡逻", "kind": "patrol", "location": {"lon": 114.159, "lat": 22.847}}
    reply = await world.http.post("/api/v1/teams", json=body, headers=admin.headers)
    assert reply.status_code == 422
    assert reply.json()["field"] == "radius_m"


async def test_covering_is_exact_on_the_ellipsoid_at_the_boundary(world: World) -> None:
    team = await world.team("fixed_post")
    admin = await world.admin()
    lon, lat = QINGXI
    inside = point_at(lon, lat, 37.0, 99.999)
    outside = point_at(lon, lat, 37.0, 100.001)
    found = await covering(world, admin.headers, *inside)
    assert [t["id"] for t in found] == [team["id"]]
    assert abs(found[0]["distance_m"] - 99.999) < 0.002
    assert found[0]["tier"] == 1
    assert await covering(world, admin.headers, *outside) == []


async def test_gcj02_input_is_converted_before_matching(world: World) -> None:
    team = await world.team("fixed_post")
    admin = await world.admin()
    gcj_lon, gcj_lat = from_wgs84(*QINGXI, CRS.GCJ02)
    # Taken as WGS84, the GCJ-02 numbers lie some 600 m away: outside a 100 m zone.
    assert 550 < distance_m(gcj_lon, gcj_lat, *QINGXI) < 650
    assert await covering(world, admin.headers, gcj_lon, gcj_lat) == []
    found = await covering(world, admin.headers, gcj_lon, gcj_lat, "gcj02")
    assert [t["id"] for t in found] == [team["id"]]
    assert found[0]["distance_m"] < 0.01


async def test_a_team_located_in_bd09_is_stored_in_wgs84(world: World) -> None:
    bd_lon, bd_lat = from_wgs84(*QINGXI, CRS.BD09)
    team = await world.team("mobile", lon=bd_lon, lat=bd_lat, crs="bd09")
    stored = team["location"]
    assert distance_m(stored["lon"], stored["lat"], *QINGXI) < 0.01


async def test_polygon_zones_cover_their_area_and_boundary(world: World) -> None:
    square = square_zone(114.15, 22.84, 0.01)
    team = await world.team("patrol", zone=square)
    admin = await world.admin()
    assert [t["id"] for t in await covering(world, admin.headers, 114.155, 22.845)] == [team["id"]]
    assert [t["id"] for t in await covering(world, admin.headers, 114.16, 22.845)] == [team["id"]]
    assert await covering(world, admin.headers, 114.1601, 22.845) == []


async def test_invalid_polygon_is_refused_with_the_reason(world: World) -> None:
    admin = await world.admin()
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [[114.15, 22.84], [114.16, 22.85], [114.16, 22.84], [114.15, 22.85], [114.15, 22.84]]
        ],
    }
    body = {
        "name": "坏区域",
        "kind": "patrol",
        "location": {"lon": 114.155, "lat": 22.845},
        "zone": bowtie,
    }
    reply = await world.http.post("/api/v1/teams", json=body, headers=admin.headers)
    assert reply.status_code == 422
    assert reply.json()["field"] == "zone"
    assert "Self-intersection" in reply.json()["detail"]
    assert (await world.http.get("/api/v1/teams", headers=admin.headers)).json() == []


async def test_bad_coordinates_name_the_field(world: World) -> None:
    admin = await world.admin()
    cases: list[tuple[Any, str]] = [
        ({"lon": 114.1, "lat": 91}, "location.lat"),
        ({"lon": 181, "lat": 22.8}, "location.lon"),
        ({"lon": 114.1, "lat": 22.8, "crs": "epsg3857"}, "location.crs"),
        ({"lon": 2.35, "lat": 48.85, "crs": "gcj02"}, "location"),
    ]
    for location, field in cases:
        body = {"name": "x", "kind": "fixed_post", "location": location}
        reply = await world.http.post("/api/v1/teams", json=body, headers=admin.headers)
        assert reply.status_code == 422, (location, reply.text)
        assert field in reply.json()["detail"], reply.json()
    raw = '{"name": "x", "kind": "fixed_post", "location": {"lon": NaN, "lat": 22.8}}'
    reply = await world.http.post(
        "/api/v1/teams",
        content=raw,
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert reply.status_code == 422
    assert "location.lon" in reply.json()["detail"]
    for query in ("lon=nan&lat=22.8", "lon=114.1&lat=inf", "lon=114.1&lat=-91"):
        reply = await world.http.get(f"/api/v1/teams/covering?{query}", headers=admin.headers)
        assert reply.status_code == 422, query


async def test_changes_reach_the_coverage_index(world: World) -> None:
    admin = await world.admin()
    team = await world.team("fixed_post")
    far = point_at(*QINGXI, 90.0, 300.0)
    assert await covering(world, admin.headers, *far) == []
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"radius_m": 350}, headers=admin.headers
    )
    assert reply.status_code == 200 and reply.json()["radius_m"] == 350
    assert [t["id"] for t in await covering(world, admin.headers, *far)] == [team["id"]]
    reply = await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
    assert reply.status_code == 204
    assert await covering(world, admin.headers, *far) == []
    reply = await world.http.get(f"/api/v1/teams/{team['id']}", headers=admin.headers)
    assert reply.status_code == 404


async def test_retired_teams_are_listed_on_request_for_the_office_after_those_in_service(
    world: World,
) -> None:
    """Reports still cover a retired team's dispatches, so the office must be able to pick it;
    the teams alerted today stay the plain list, and a leader has no need of the rest."""
    admin = await world.admin()
    gone = await world.team("fixed_post", name="A旧驻点队")
    kept = await world.team("patrol", radius_m=2000, name="Z巡逻警力")
    assert gone["retired_at"] is None
    reply = await world.http.delete(f"/api/v1/teams/{gone['id']}", headers=admin.headers)
    assert reply.status_code == 204

    plain = await world.http.get("/api/v1/teams", headers=admin.headers)
    assert [t["id"] for t in plain.json()] == [kept["id"]]
    for role in ("admin", "operator", "auditor"):
        account = await world.account(role)
        reply = await world.http.get(
            "/api/v1/teams", params={"include_retired": "true"}, headers=account.headers
        )
        assert reply.status_code == 200, reply.text
        # After the teams in service, though tier 1 and first by name.
        assert [t["id"] for t in reply.json()] == [kept["id"], gone["id"]]
        retired = reply.json()[1]
        assert retired["name"] == "A旧驻点队"
        assert retired["retired_at"] is not None and retired["retired_at"].endswith("+08:00")
        assert reply.json()[0]["retired_at"] is None

    leader = await world.leader(kept)
    reply = await world.http.get(
        "/api/v1/teams", params={"include_retired": "true"}, headers=leader.headers
    )
    assert reply.status_code == 403
    assert reply.json()["field"] == "include_retired"
    reply = await world.http.get("/api/v1/teams", headers=leader.headers)
    assert [t["id"] for t in reply.json()] == [kept["id"]]


async def test_the_teams_are_listed_a_page_at_a_time_for_a_city(world: World) -> None:
    """A city's tens of thousands of teams are megabytes in one answer: the console reads them
    in pages, each following the one before in the list's order, none larger than the most
    the server gives at once; without a limit the whole list comes as before."""
    admin = await world.admin()
    made = [await world.team("fixed_post", name=f"驻点队{i}") for i in range(5)]
    whole = await world.http.get("/api/v1/teams", headers=admin.headers)
    assert len(whole.json()) == len(made)
    pages = [
        (
            await world.http.get(
                "/api/v1/teams", params={"limit": 2, "offset": offset}, headers=admin.headers
            )
        ).json()
        for offset in (0, 2, 4)
    ]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [t["id"] for page in pages for t in page] == [t["id"] for t in whole.json()]
    for params, field in (
        ({"limit": 2001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
    ):
        reply = await world.http.get("/api/v1/teams", params=params, headers=admin.headers)
        assert reply.status_code == 422, reply.text
        assert field in reply.text


async def test_only_admins_manage_teams(world: World) -> None:
    operator = await world.operator()
    body = {"name": "x", "kind": "fixed_post", "location": {"lon": 114.1, "lat": 22.8}}
    reply = await world.http.post("/api/v1/teams", json=body, headers=operator.headers)
    assert reply.status_code == 403
    reply = await world.http.post("/api/v1/teams", json=body)
    assert reply.status_code == 401
    reply = await world.http.get("/api/v1/teams", headers={"Authorization": "Bearer nonsense"})
    assert reply.status_code == 401
    reply = await world.http.patch(
        "/api/v1/teams/nope", json={}, headers=(await world.admin()).headers
    )
    assert reply.status_code == 404


async def test_a_team_that_stops_being_mobile_loses_its_duty_hours_and_serves_always(
    world: World,
) -> None:
    team = await world.team("mobile")
    admin = await world.admin()
    duty = f"/api/v1/rosters/duty/{team['id']}"
    # All day, unit 1 on turn, and nobody of unit 1 on the roster: a mobile team that never
    # serves.
    schedule = {"start": "00:00", "end": "00:00", "rotation_start": "2026-01-05", "units": [1]}
    assert (await world.http.put(duty, json=schedule, headers=admin.headers)).status_code == 200
    renamed = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"name": "改名的机动队"}, headers=admin.headers
    )
    assert renamed.status_code == 200
    assert (await world.http.get(duty, headers=admin.headers)).status_code == 200, "still mobile"

    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"kind": "fixed_post"}, headers=admin.headers
    )

    assert reply.status_code == 200 and reply.json()["kind"] == "fixed_post"
    gone = await world.http.get(duty, headers=admin.headers)
    assert gone.status_code == 404 and "has no duty schedule" in gone.json()["detail"]
    incident = await world.report(await world.operator())
    assert [d["team_id"] for d in incident["dispatches"]] == [team["id"]]
    assert incident["skipped"] == [] and incident["chain"][0]["covered"] is True
    for _ in range(200):
        book = world.runtime.duty.current()
        if book is not None:
            break
        await asyncio.sleep(0.01)
    assert book is not None and team["id"] not in book, "the duty book heard of it"
    trail = await world.http.get(
        "/api/v1/audit", params={"action": "update_team"}, headers=admin.headers
    )
    assert trail.json()["items"][0]["data"]["changes"] == {"kind": "fixed_post"}
    assert trail.json()["items"][0]["data"]["duty_schedule"] == "removed"

    # Mobile again, it starts without duty hours: it serves round the clock until given some.
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"kind": "mobile"}, headers=admin.headers
    )
    assert reply.status_code == 200
    assert (await world.http.get(duty, headers=admin.headers)).status_code == 404


async def covering(
    world: World, headers: dict[str, str], lon: float, lat: float, crs: str = "wgs84"
) -> list[dict[str, Any]]:
    reply = await world.http.get(
        "/api/v1/teams/covering", params={"lon": lon, "lat": lat, "crs": crs}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()
    return found


def square_zone(lon: float, lat: float, size: float) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def named(reply: Any) -> list[str]:
    """The fields a 422 names: one by the service, each one by the schema."""
    body = reply.json()
    return [body["field"]] if "field" in body else [f["field"] for f in body["fields"]]


async def patch_team(world: World, team_id: str, body: dict[str, Any]) -> Any:
    headers = (await world.admin()).headers
    return await world.http.patch(f"/api/v1/teams/{team_id}", json=body, headers=headers)


async def test_a_change_of_kind_takes_the_new_kinds_zone(world: World) -> None:
    admin = await world.admin()
    team = await world.team("mobile")
    at_300_m = point_at(*QINGXI, 45.0, 300.0)
    assert [t["id"] for t in await covering(world, admin.headers, *at_300_m)] == [team["id"]]
    reply = await patch_team(world, team["id"], {"kind": "fixed_post"})
    assert (reply.json()["tier"], reply.json()["radius_m"]) == (1, 100.0)
    assert await covering(world, admin.headers, *at_300_m) == []
    reply = await patch_team(world, team["id"], {"kind": "mobile"})
    assert reply.json()["radius_m"] == 500.0
    assert [t["id"] for t in await covering(world, admin.headers, *at_300_m)] == [team["id"]]
    # A radius given with the change is taken; the same kind again changes nothing.
    reply = await patch_team(world, team["id"], {"kind": "fixed_post", "radius_m": 150})
    assert reply.json()["radius_m"] == 150.0
    reply = await patch_team(world, team["id"], {"kind": "fixed_post"})
    assert reply.json()["radius_m"] == 150.0
    # A joint-defence team's circle is no police zone: becoming police needs one of its own.
    reply = await patch_team(world, team["id"], {"kind": "patrol"})
    assert reply.status_code == 422 and reply.json()["field"] == "radius_m"
    reply = await patch_team(world, team["id"], {"kind": "patrol", "radius_m": 2500})
    assert (reply.json()["tier"], reply.json()["radius_m"]) == (2, 2500.0)


async def test_a_null_radius_or_zone_clears_that_one_and_keeps_the_other(world: World) -> None:
    admin = await world.admin()
    post = await world.team("fixed_post", radius_m=250)
    # A circle has no polygon to clear: only what is given changes.
    reply = await patch_team(world, post["id"], {"zone": None})
    assert (reply.status_code, reply.json()["radius_m"]) == (200, 250.0)
    reply = await patch_team(world, post["id"], {"radius_m": 300, "zone": None})
    assert reply.json()["radius_m"] == 300.0
    # A cleared radius leaves nothing: the kind's circle, as a new team's.
    reply = await patch_team(world, post["id"], {"radius_m": None})
    assert reply.json()["radius_m"] == 100.0
    patrol = await world.team("patrol", radius_m=2500)
    reply = await patch_team(world, patrol["id"], {"zone": None})
    assert (reply.json()["radius_m"], reply.json()["zone"]) == (2500.0, None)
    zone = square_zone(114.15, 22.84, 0.01)
    drawn = await world.team("patrol", zone=zone)
    reply = await patch_team(world, drawn["id"], {"radius_m": None})
    assert (reply.json()["radius_m"], reply.json()["zone"]) == (None, drawn["zone"])
    # A police team left with neither has no default circle to take.
    reply = await patch_team(world, drawn["id"], {"zone": None})
    assert reply.status_code == 422 and named(reply) == ["radius_m"]
    stored = (await world.http.get(f"/api/v1/teams/{drawn['id']}", headers=admin.headers)).json()
    assert stored["zone"] == drawn["zone"]
    # The polygon given up with a change to a joint-defence kind: that kind's circle.
    reply = await patch_team(world, drawn["id"], {"kind": "fixed_post", "zone": None})
    assert (reply.json()["radius_m"], reply.json()["zone"]) == (100.0, None)
    # A change of kind brings the new kind's zone, not the old kind's radius.
    reply = await patch_team(world, patrol["id"], {"kind": "mobile", "zone": None})
    assert reply.json()["radius_m"] == 500.0


async def test_police_keep_their_zone_from_patrol_to_response(world: World) -> None:
    zone = square_zone(114.15, 22.84, 0.01)
    team = await world.team("patrol", zone=zone)
    reply = await patch_team(world, team["id"], {"kind": "response"})
    assert reply.status_code == 200
    assert (reply.json()["tier"], reply.json()["zone"]) == (3, team["zone"])


async def test_joint_defence_teams_take_no_polygon(world: World) -> None:
    admin = await world.admin()
    zone = square_zone(114.15, 22.84, 0.01)
    for kind in ("fixed_post", "mobile"):
        body = {"name": "x", "kind": kind, "location": {"lon": 114.155, "lat": 22.845}}
        reply = await world.http.post(
            "/api/v1/teams", json={**body, "zone": zone}, headers=admin.headers
        )
        assert reply.status_code == 422 and reply.json()["field"] == "zone", reply.text
    assert (await world.http.get("/api/v1/teams", headers=admin.headers)).json() == []
    mobile = await world.team("mobile")
    reply = await patch_team(world, mobile["id"], {"zone": zone})
    assert reply.status_code == 422 and reply.json()["field"] == "zone"
    patrol = await world.team("patrol", zone=zone)
    # The polygon drawn for police is not dropped silently: the change must give the radius.
    reply = await patch_team(world, patrol["id"], {"kind": "fixed_post"})
    assert reply.status_code == 422 and reply.json()["field"] == "zone"
    reply = await patch_team(world, patrol["id"], {"kind": "fixed_post", "zone": zone})
    assert reply.status_code == 422 and reply.json()["field"] == "zone"
    stored = (await world.http.get(f"/api/v1/teams/{patrol['id']}", headers=admin.headers)).json()
    assert (stored["kind"], stored["zone"]) == ("patrol", patrol["zone"])
    reply = await patch_team(world, patrol["id"], {"kind": "fixed_post", "radius_m": 100})
    assert reply.status_code == 200
    assert (reply.json()["tier"], reply.json()["radius_m"], reply.json()["zone"]) == (1, 100, None)


async def test_a_zone_across_the_180th_meridian_or_wider_than_two_degrees_is_refused(
    world: World,
) -> None:
    admin = await world.admin()
    across = [[179.9, 10.0], [-179.9, 10.0], [-179.9, 10.1], [179.9, 10.1], [179.9, 10.0]]
    world_sized = [[-180, -89], [180, -89], [180, 89], [-180, 89], [-180, -89]]
    for ring in (across, world_sized):
        body = {
            "name": "x",
            "kind": "response",
            "location": {"lon": 114.155, "lat": 22.845},
            "zone": {"type": "Polygon", "coordinates": [ring]},
        }
        reply = await world.http.post("/api/v1/teams", json=body, headers=admin.headers)
        assert reply.status_code == 422, reply.text
        assert reply.json()["field"] == "zone"
        assert "spans at most 2 degrees" in reply.json()["detail"]
    assert (await world.http.get("/api/v1/teams", headers=admin.headers)).json() == []


async def test_a_zone_drawn_in_bd09_covers_what_was_drawn(world: World) -> None:
    admin = await world.admin()
    west, south = from_wgs84(114.13, 22.82, CRS.BD09)
    zone = {**square_zone(west, south, 0.05), "crs": "bd09"}
    team = await world.team("patrol", zone=zone)
    # 3 m inside and outside the middle of the south edge, as drawn on Baidu's map.
    three_m = 3 / 110_574
    inside = (west + 0.025, south + three_m)
    outside = (west + 0.025, south - three_m)
    found = await covering(world, admin.headers, *inside, "bd09")
    assert [t["id"] for t in found] == [team["id"]]
    assert await covering(world, admin.headers, *outside, "bd09") == []


async def test_an_altitude_must_be_a_number(world: World) -> None:
    admin = await world.admin()
    zone = square_zone(114.15, 22.84, 0.01)
    zone["coordinates"][0][1] = [114.16, 22.84, "a"]
    body = {"name": "x", "kind": "patrol", "location": {"lon": 114.155, "lat": 22.845}}
    reply = await world.http.post(
        "/api/v1/teams", json={**body, "zone": zone}, headers=admin.headers
    )
    assert reply.status_code == 422 and reply.json()["field"] == "zone"
    assert "coordinates[0][1]: altitude" in reply.json()["detail"]


async def test_a_radius_is_between_one_metre_and_fifty_kilometres(world: World) -> None:
    admin = await world.admin()
    body = {"name": "x", "kind": "patrol", "location": {"lon": 114.155, "lat": 22.845}}
    for radius in (1e-300, 0.5, 0, -1, 50_000.5):
        reply = await world.http.post(
            "/api/v1/teams", json={**body, "radius_m": radius}, headers=admin.headers
        )
        assert reply.status_code == 422, radius
        assert named(reply) == ["radius_m"]
    team = await world.team("patrol", radius_m=1)
    reply = await patch_team(world, team["id"], {"radius_m": 1e-300})
    assert reply.status_code == 422 and named(reply) == ["radius_m"]
    reply = await patch_team(world, team["id"], {"radius_m": 50_000})
    assert reply.json()["radius_m"] == 50_000


async def test_a_change_cannot_null_what_every_team_has(world: World) -> None:
    admin = await world.admin()
    team = await world.team("mobile")
    for field in ("name", "kind", "location"):
        reply = await patch_team(world, team["id"], {field: None})
        assert reply.status_code == 422, field
        assert named(reply) == [field]
    stored = (await world.http.get(f"/api/v1/teams/{team['id']}", headers=admin.headers)).json()
    assert stored == team


async def test_a_bad_value_in_a_change_is_named_by_its_field(world: World) -> None:
    team = await world.team("mobile")
    for body, fields in (
        ({"name": ""}, ["name"]),
        ({"name": "x" * 129}, ["name"]),
        ({"kind": "castle"}, ["kind"]),
        ({"location": {"lon": "east", "lat": 22.8}}, ["location.lon"]),
    ):
        reply = await patch_team(world, team["id"], body)
        assert reply.status_code == 422, body
        assert named(reply) == fields, reply.json()


async def test_the_covering_query_names_the_parameter_at_fault(world: World) -> None:
    admin = await world.admin()
    url = "/api/v1/teams/covering"
    reply = await world.http.get(
        url, params={"lon": 2.35, "lat": 48.85, "crs": "gcj02"}, headers=admin.headers
    )
    assert reply.status_code == 422
    assert reply.json()["field"] == "crs"
    assert reply.json()["detail"].startswith("crs: gcj02 coordinates must lie within China")
    for query, field in (
        ("lon=1_14&lat=22.8", "lon"),
        ("lon=114.1&lat=2_2.8", "lat"),
        ("lon=0x72&lat=22.8", "lon"),
        ("lon=114.1&lat=%2022.8", "lat"),
        # ASCII digits only: Unicode's \d also matches Arabic-Indic and full-width ones.
        ("lon=\u0661\u0661\u0664.1&lat=22.8", "lon"),
        ("lon=114.1&lat=\uff12\uff12.8", "lat"),
    ):
        reply = await world.http.get(f"{url}?{query}", headers=admin.headers)
        assert reply.status_code == 422, query
        assert named(reply) == [field], reply.json()
        assert "write a plain decimal number" in reply.json()["detail"], reply.json()
    for query in ("lon=114.159&lat=22.847", "lon=%2B114.159&lat=2.2847e1", "lon=114&lat=.5"):
        reply = await world.http.get(f"{url}?{query}", headers=admin.headers)
        assert reply.status_code == 200, query


async def test_the_covering_querys_ranges_are_declared_as_it_checks_them(world: World) -> None:
    """lon and lat are declared with JSON Schema's minimum and maximum, which clients and
    generators read, and the server takes exactly that range."""
    admin = await world.admin()
    schema = (await world.http.get("/openapi.json")).json()
    declared = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/v1/teams/covering"]["get"]["parameters"]
    }
    ranges = {"lon": (-180, 180), "lat": (-90, 90)}
    for name, (low, high) in ranges.items():
        assert (declared[name]["minimum"], declared[name]["maximum"]) == (low, high), name
        assert not {"ge", "le"} & set(declared[name]), declared[name]
    url = "/api/v1/teams/covering"
    for lon, lat in ((-180, -90), (180, 90)):
        reply = await world.http.get(url, params={"lon": lon, "lat": lat}, headers=admin.headers)
        assert reply.status_code == 200 and reply.json() == [], (lon, lat)
    for lon, lat, field in ((180.5, 0, "lon"), (-180.5, 0, "lon"), (0, 90.5, "lat")):
        reply = await world.http.get(url, params={"lon": lon, "lat": lat}, headers=admin.headers)
        assert reply.status_code == 422 and named(reply) == [field], reply.json()


async def create_team(world: World, name: str, kind: str = "fixed_post") -> Any:
    body = {"name": name, "kind": kind, "location": {"lon": QINGXI[0], "lat": QINGXI[1]}}
    return await world.http.post("/api/v1/teams", json=body, headers=(await world.admin()).headers)


async def test_a_name_others_read_has_no_control_characters_and_is_not_blank(
    world: World,
) -> None:
    admin = await world.admin()
    team = await world.team("mobile")
    # BEL garbles a screen; RLO (U+202E) shows what follows it backwards; U+2066 isolates it.
    for name in ("控制\u0007字符队", "\u202e队防联", "联防\u2066队", "   ", "\u3000", "x" * 129):
        reply = await create_team(world, name)
        assert reply.status_code == 422, (name, reply.text)
        assert named(reply) == ["name"]
        reply = await patch_team(world, team["id"], {"name": name})
        assert reply.status_code == 422, (name, reply.text)
        assert named(reply) == ["name"]
    assert "control character (U+202E)" in (await create_team(world, "\u202eA")).text
    assert [
        t["id"] for t in (await world.http.get("/api/v1/teams", headers=admin.headers)).json()
    ] == [team["id"]]
    # Surrounding whitespace is dropped, as the rosters' 队伍名称 is read.
    reply = await create_team(world, " 三中工业园驻点应急联防队\u3000")
    assert reply.status_code == 201 and reply.json()["name"] == "三中工业园驻点应急联防队"
    reply = await patch_team(world, team["id"], {"name": "\t银湖机动队 "})
    assert reply.status_code == 200 and reply.json()["name"] == "银湖机动队"


async def test_a_name_is_one_teams_while_it_is_in_service(world: World) -> None:
    first = (await create_team(world, "三中工业园驻点应急联防队")).json()
    reply = await create_team(world, "三中工业园驻点应急联防队", kind="mobile")
    assert reply.status_code == 409, reply.text
    assert reply.json()["field"] == "name" and "三中工业园驻点应急联防队" in reply.json()["detail"]

    other = (await create_team(world, "清溪商业步行街驻点应急联防队")).json()
    reply = await patch_team(world, other["id"], {"name": " 三中工业园驻点应急联防队"})
    assert reply.status_code == 409 and reply.json()["field"] == "name"
    admin = await world.admin()
    stored = await world.http.get(f"/api/v1/teams/{other['id']}", headers=admin.headers)
    assert stored.json() == other, "a refused change changes nothing"
    # A team keeps its own name in a change of something else.
    reply = await patch_team(world, first["id"], {"name": first["name"], "radius_m": 150})
    assert reply.status_code == 200, reply.text

    # A retired team's name may be taken again.
    await world.http.delete(f"/api/v1/teams/{first['id']}", headers=admin.headers)
    reply = await patch_team(world, other["id"], {"name": "三中工业园驻点应急联防队"})
    assert reply.status_code == 200, reply.text
    assert (await create_team(world, "清溪商业步行街驻点应急联防队")).status_code == 201
    names = [
        t["name"] for t in (await world.http.get("/api/v1/teams", headers=admin.headers)).json()
    ]
    assert sorted(names) == ["三中工业园驻点应急联防队", "清溪商业步行街驻点应急联防队"]


async def test_one_name_taken_by_requests_at_once_is_one_teams(world: World) -> None:
    replies = await at_once(lambda i: create_team(world, "银湖工业区机动应急联防队", "mobile"))
    assert statuses(replies) == [201] + [409] * 7
    assert {r.json()["field"] for r in replies if r.status_code == 409} == {"name"}
    admin = await world.admin()
    listed = (await world.http.get("/api/v1/teams", headers=admin.headers)).json()
    assert [t["name"] for t in listed] == ["银湖工业区机动应急联防队"]


async def test_a_name_taken_while_another_transaction_takes_it_is_a_conflict(
    world: World,
) -> None:
    """PostgreSQL, step by step: the other team is written and not committed when the request
    checks the name; the request waits for it, and is refused once it commits."""
    reply = await racing_a_writer(
        world,
        lambda: create_team(world, "清溪中心机动应急联防队", "mobile"),
        "INSERT INTO teams (id, name, kind, tier, lon, lat, radius_m, created_at, updated_at,"
        " revision, former_names) VALUES ($1, '清溪中心机动应急联防队', 'mobile', 1, 114.159,"
        " 22.847, 500, now(), now(), 1000, '[]')",
        uuid.uuid4().hex,
    )
    assert reply.status_code == 409, reply.text
    assert reply.json()["field"] == "name"
