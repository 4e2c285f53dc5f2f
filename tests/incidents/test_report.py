"""Reporting an incident: the right teams, the three clocks, one incident per idempotency key."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pyproj import Geod

from geo.crs import CRS, from_wgs84, to_wgs84
from tests.support import QINGXI, World

GEOD = Geod(ellps="WGS84")


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def near(metres: float, azimuth: float = 45.0) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return float(lon), float(lat)


async def test_report_dispatches_every_covering_team_and_starts_three_clocks(world: World) -> None:
    fixed = await world.team("fixed_post")
    mobile = await world.team("mobile", *near(400, 180))
    patrol = await world.team("patrol", *near(2000, 90), radius_m=3000)
    response = await world.team("response", *near(4000, 270), radius_m=6000)
    far_fixed = await world.team("fixed_post", *near(150, 0))
    operator = await world.operator()

    incident = await world.report(operator)

    assert incident["status"] == "open"
    assert incident["location"] == {"lon": QINGXI[0], "lat": QINGXI[1]}
    reported = t(incident["reported_at"])
    assert reported.utcoffset() == timedelta(hours=8), "times are shown in Asia/Shanghai"
    chain = incident["chain"]
    assert [c["tier"] for c in chain] == [1, 2, 3]
    assert [c["target_s"] for c in chain] == [60, 180, 300]
    assert [t(c["deadline"]) - reported for c in chain] == [
        timedelta(seconds=60),
        timedelta(seconds=180),
        timedelta(seconds=300),
    ]
    assert all(c["status"] == "pending" and c["covered"] for c in chain)
    by_team = {d["team_id"]: d for d in incident["dispatches"]}
    assert set(by_team) == {fixed["id"], mobile["id"], patrol["id"], response["id"]}
    assert far_fixed["id"] not in by_team
    assert by_team[mobile["id"]]["tier"] == 1
    assert abs(by_team[mobile["id"]]["distance_m"] - 400) < 0.01
    assert all(
        t(d["alerted_at"]) == reported and d["delivered_at"] is None for d in incident["dispatches"]
    )
    assert await world.incident(operator, incident["id"]) == incident


async def test_an_uncovered_tier_is_shown_as_such(world: World) -> None:
    await world.team("patrol", radius_m=1000)
    operator = await world.operator()
    incident = await world.report(operator)
    assert [c["covered"] for c in incident["chain"]] == [False, True, False]


async def test_a_point_given_in_gcj02_or_bd09_is_covered_at_the_zone_edge_as_the_ellipsoid_says(
    world: World,
) -> None:
    """A point read off AMap (GCJ-02) or Baidu (BD-09) 99 m from a fixed post is dispatched to
    it as covering it and one 101 m away is not (it is alerted only in the wider ring drawn at
    once where no tier-1 team covers), exactly as the geodesic distance of the converted WGS84
    point says, and so does the form's preview: the post's 100 m radius is no wider or
    narrower for the shifted systems."""
    post = await world.team("fixed_post")
    operator = await world.operator()
    for crs in (CRS.GCJ02, CRS.BD09):
        for metres, azimuth in ((99.0, 37.0), (101.0, 37.0), (99.0, 250.0), (101.0, 250.0)):
            typed = from_wgs84(*near(metres, azimuth), crs)
            incident = await world.report(operator, *typed, crs=crs.value)
            lon, lat = to_wgs84(*typed, crs)
            assert incident["location"] == {"lon": lon, "lat": lat}
            _, _, geodesic = GEOD.inv(*QINGXI, lon, lat)
            assert abs(geodesic - metres) < 0.001, (crs, metres, geodesic)
            (alerted,) = [d for d in incident["dispatches"] if d["team_id"] == post["id"]]
            assert abs(alerted["distance_m"] - geodesic) < 0.001
            # Inside its zone the post is alerted as covering the point (ring 0); outside it,
            # with no tier-1 team covering, only as the nearest in the wider ring at once.
            assert (alerted["ring"] == 0) == (geodesic <= post["radius_m"]), (crs, metres)
            # The form's preview before sending says the same.
            params = {"lon": typed[0], "lat": typed[1], "crs": crs.value}
            preview = await world.http.get(
                "/api/v1/teams/covering", params=params, headers=operator.headers
            )
            assert preview.status_code == 200, preview.text
            covering = [team["id"] for team in preview.json()]
            assert (covering == [post["id"]]) == (geodesic <= post["radius_m"]), (crs, metres)
            assert covering in ([], [post["id"]])


async def test_same_idempotency_key_returns_the_same_incident(world: World) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    key = {"Idempotency-Key": "radio-call-0042"}
    replies = await asyncio.gather(*(world.report(operator, headers=key) for _ in range(5)))
    assert len({r["id"] for r in replies}) == 1
    listed = await world.http.get("/api/v1/incidents", headers=operator.headers)
    assert len(listed.json()) == 1
    assert len(listed.json()[0]["dispatches"]) == 1
    other = await world.operator()
    assert (await world.report(other, headers=key))["id"] != replies[0]["id"]


async def test_a_used_key_with_a_different_report_is_refused_and_the_first_is_kept(
    world: World,
) -> None:
    """A key sent again with another report (another point, category or description) was
    answered with the first incident, 201 and Idempotent-Replayed: the second report was lost
    without a word. It is refused, 422 naming the header, nothing written; the same report
    sent again, however its JSON is written, is still the first incident."""
    await world.team("fixed_post")
    operator = await world.operator()
    headers = {**operator.headers, "Idempotency-Key": "radio-call-0043"}
    where = {"lon": QINGXI[0], "lat": QINGXI[1]}
    body = {"location": where, "category": "fight", "description": "两名男子斗殴"}
    first = await world.http.post("/api/v1/incidents", json=body, headers=headers)
    assert first.status_code == 201, first.text
    incident_id = first.json()["id"]
    for change in (
        {"category": "fire"},
        {"description": "仓库起火"},
        {"description": None},
        {"location": {"lon": QINGXI[0] + 0.001, "lat": QINGXI[1]}},
        # The same numbers in another system are another point.
        {"location": {**where, "crs": "gcj02"}},
    ):
        reply = await world.http.post("/api/v1/incidents", json={**body, **change}, headers=headers)
        assert reply.status_code == 422, (change, reply.text)
        answer = reply.json()
        assert answer["error"] == "idempotency_key_reused", reply.text
        assert answer["field"] == "Idempotency-Key", reply.text
        assert incident_id in answer["detail"], reply.text
        assert "Idempotent-Replayed" not in reply.headers
    same = {
        "description": "两名男子斗殴",
        "category": "fight",
        "location": {**where, "crs": "wgs84"},
    }
    again = await world.http.post("/api/v1/incidents", json=same, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == incident_id
    listed = await world.http.get("/api/v1/incidents", headers=operator.headers)
    assert [i["id"] for i in listed.json()] == [incident_id]
    admin = await world.admin()
    trail = await world.http.get(
        "/api/v1/audit", params={"action": "report_incident"}, headers=admin.headers
    )
    assert [e["data"]["replayed"] for e in trail.json()["items"]] == [True, False]


async def test_two_reports_sent_at_once_under_one_key_are_one_incident_and_one_refusal(
    world: World,
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    headers = {**operator.headers, "Idempotency-Key": "radio-call-0044"}
    bodies = [
        {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": category}
        for category in ("fight", "fire")
    ]
    replies = await asyncio.gather(
        *(world.http.post("/api/v1/incidents", json=b, headers=headers) for b in bodies)
    )
    assert sorted(r.status_code for r in replies) == [201, 422], [r.text for r in replies]
    [kept] = [r.json() for r in replies if r.status_code == 201]
    listed = await world.http.get("/api/v1/incidents", headers=operator.headers)
    assert [(i["id"], i["category"]) for i in listed.json()] == [(kept["id"], kept["category"])]


async def test_bad_reports_are_refused_and_nothing_is_written(world: World) -> None:
    operator = await world.operator()
    bodies = [
        ({"location": {"lon": 114.1, "lat": 95}, "category": "fight"}, "location.lat"),
        (
            {"location": {"lon": 114.1, "lat": 22.8, "crs": "utm"}, "category": "fight"},
            "location.crs",
        ),
        ({"location": {"lon": 114.1, "lat": 22.8}, "category": "parking"}, "category"),
        ({"category": "fight"}, "location"),
    ]
    for body, field in bodies:
        reply = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)
        assert reply.status_code == 422, reply.text
        assert field in reply.json()["detail"]
    leader_team = await world.team("fixed_post")
    leader = await world.leader(leader_team)
    reply = await world.http.post(
        "/api/v1/incidents",
        json={"location": {"lon": 114.1, "lat": 22.8}, "category": "fight"},
        headers=leader.headers,
    )
    assert reply.status_code == 403
    listed = await world.http.get("/api/v1/incidents", headers=operator.headers)
    assert listed.json() == []


async def test_a_description_is_lines_of_text_without_control_characters(world: World) -> None:
    operator = await world.operator()
    where = {"lon": QINGXI[0], "lat": QINGXI[1]}
    # BEL garbles a screen; RLO (U+202E) shows what follows it backwards.
    for text in ("两名男子持刀\u0007", "门口\u202e刀持子男名两", "\x1b[2J清屏"):
        body = {"location": where, "category": "fight", "description": text}
        reply = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)
        assert reply.status_code == 422, text
        assert [f["field"] for f in reply.json()["fields"]] == ["description"]
        assert "control character" in reply.json()["detail"]
    assert (await world.http.get("/api/v1/incidents", headers=operator.headers)).json() == []
    text = "两名男子持刀\r\n在三中工业园门口\t(东门)"
    body = {"location": where, "category": "fight", "description": text}
    reply = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)
    assert reply.status_code == 201 and reply.json()["description"] == text


async def test_unknown_ids_are_404(world: World) -> None:
    operator = await world.operator()
    for method, path in [
        ("GET", "/api/v1/incidents/nope"),
        ("POST", "/api/v1/incidents/nope/close"),
        ("POST", "/api/v1/dispatches/nope/accept"),
        ("POST", "/api/v1/dispatches/nope/arrive"),
        ("GET", "/api/v1/incidents/nope/events"),
    ]:
        reply = await world.http.request(method, path, headers=operator.headers)
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json()["error"] == "not_found"


async def test_a_leader_is_sent_their_own_teams_dispatch_and_the_board_the_whole_incident(
    world: World,
) -> None:
    fixed = await world.team("fixed_post")
    mobile = await world.team("mobile", *near(400, 180))
    patrol = await world.team("patrol", *near(2000, 90), radius_m=3000)
    guard, rider, police = (
        await world.leader(fixed),
        await world.leader(mobile),
        await world.leader(patrol),
    )
    operator = await world.operator()
    board, phone, car = (
        await world.connect(operator),
        await world.connect(guard),
        await world.connect(police),
    )

    incident = await world.report(operator)

    # The console sees every team; a phone only what its leader acts on, with the whole chain.
    whole = (await board.next_of("incident.updated"))["data"]
    assert {d["team_id"] for d in whole["dispatches"]} == {fixed["id"], mobile["id"], patrol["id"]}
    alert = (await phone.next_of("alert"))["data"]
    own = next(d for d in incident["dispatches"] if d["team_id"] == fixed["id"])
    assert alert["dispatch"] == own
    assert alert["incident"]["dispatches"] == [own]
    assert alert["incident"]["chain"] == incident["chain"]
    assert alert["incident"] == {**incident, "dispatches": [own], "skipped": []}

    # The same on every later update: the police accepting changes nothing on the guard's copy
    # but the news, and the police's own copy shows the acceptance.
    police_dispatch = next(d for d in incident["dispatches"] if d["team_id"] == patrol["id"])
    await car.next_of("alert")
    reply = await world.http.post(
        f"/api/v1/dispatches/{police_dispatch['id']}/accept", headers=police.headers
    )
    assert reply.status_code == 200, reply.text
    guard_copy = (await phone.next_of("incident.updated"))["data"]
    assert [d["team_id"] for d in guard_copy["dispatches"]] == [fixed["id"]]
    police_copy = (await car.next_of("incident.updated"))["data"]
    assert [d["accepted_at"] is not None for d in police_copy["dispatches"]] == [True]
    board_copy = (await board.next_of("incident.updated"))["data"]
    assert len(board_copy["dispatches"]) == 3
    # Over HTTP a leader still reads the whole incident.
    assert len((await world.incident(rider, incident["id"]))["dispatches"]) == 3
    for socket in (board, phone, car):
        await socket.close()
